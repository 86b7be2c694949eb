//! Vault's ACL policy language: parsing (HCL and JSON) and evaluation.
//!
//! * [`parse_policy`] turns policy text into a [`Policy`] (plain data: path rules with
//!   capabilities and constraints), refusing what OpenBao 2.7.2 refuses, with its messages.
//! * [`Acl`] compiles a token's policies and answers [`Acl::capabilities`] (for
//!   `sys/capabilities*`) and [`Acl::check`] (for requests), with the deciding pattern and
//!   policies in the [`Decision`].
//! * [`DEFAULT_POLICY`] is the built-in `default` policy text.
//!
//! HCL is parsed with hcl-edit (HCL2), with `${`/`%{` escaped so they stay literal as in
//! HCL1. HCL1 layouts OpenBao accepts but HCL2 rejects are rewritten and parsed again (see
//! the `hcl1` module). Known gaps, where cairn refuses or differs:
//!
//! * HCL1 input outside the rewrite's subset is refused with the HCL2 parser's error: for
//!   instance a list without commas, or a bare word with characters other than letters,
//!   digits and `_-.+` (`path foo/bar {`). OpenBao refuses these too, as it refuses `;`
//!   and `key : value` in a block.
//! * cairn is more lenient in two harmless ways: HCL2 expression syntax (arithmetic,
//!   conditionals) is evaluated, and `"x": []` is accepted inside object values; OpenBao
//!   refuses both. Functions and variables are refused.
//! * Truncated JSON (which OpenBao's lenient HCL-JSON parser accepts) is refused.
//! * `control_group` and `list_scan_response_keys_filter_path` are refused as unsupported;
//!   `mfa_methods` is accepted but a rule naming methods denies (no step-up MFA).
//! * Identity templates (`{{identity.entity.id}}`) are kept as literal pattern text; the
//!   caller substitutes them before [`Acl::new`].

mod acl;
mod capability;
mod default_policy;
mod hcl1;
mod params;
mod parse;
mod scalars;
mod source;
pub mod template;

#[cfg(test)]
mod tests;

pub use acl::{Acl, Decision, Denial};
pub use capability::{Capabilities, Capability, Operation};
pub use default_policy::DEFAULT_POLICY;
pub use parse::{PathRule, Policy, PolicyError, parse_policy};
