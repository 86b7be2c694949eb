//! Vault's ACL policy language: parsing (HCL and JSON) and evaluation.
