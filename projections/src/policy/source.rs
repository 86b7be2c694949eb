//! Policy text to raw `path` blocks (pattern, then attribute name, line and JSON value),
//! from HCL (hcl-edit, with the HCL1 rewrite as a fallback) or from JSON (serde_json).

use hcl::edit::expr::Expression;
use hcl::edit::structure::{Attribute, Block, BlockLabel, Body, Structure};
use hcl::edit::{Span, parser};
use hcl::eval::{Context, Evaluate};
use serde_json::{Map, Value};

use super::hcl1;
use super::parse::{PolicyError, multierror};

/// One `path` block before its attributes are interpreted.
pub struct RawBlock {
    /// The block's pattern as written (the first label).
    pub key: String,
    /// Its attributes, in order; nested blocks appear as attributes whose value is an error.
    pub attrs: Vec<RawAttr>,
}

/// One attribute of a `path` block.
pub struct RawAttr {
    pub name: String,
    /// 1-based line in the original text (best effort for JSON).
    pub line: usize,
    /// The value, or why it could not be evaluated (reported only if the key is valid).
    pub value: Result<Value, String>,
}

/// Parses HCL; if the text is not valid HCL2, retries on its HCL1 rewrite, and reports the
/// original HCL2 error when that fails too. `${` and `%{` stay literal, as in HCL1.
pub fn hcl_blocks(text: &str) -> Result<Vec<RawBlock>, PolicyError> {
    let escaped = hcl1::escape_templates(text);
    let text = escaped.as_ref();
    match parser::parse_body(text) {
        Ok(body) => HclSource::new(text, None).blocks(&body),
        Err(original) => {
            let normalised = hcl1::normalise(text).ok_or_else(|| hcl_syntax_error(&original))?;
            let body = parser::parse_body(&normalised.text).map_err(|_| hcl_syntax_error(&original))?;
            HclSource::new(&normalised.text, Some(&normalised)).blocks(&body)
        }
    }
}

fn hcl_syntax_error(error: &parser::Error) -> PolicyError {
    let location = error.location();
    PolicyError::parse(format!("At {}:{}: {}", location.line(), location.column(), error.message()))
}

struct HclSource<'a> {
    /// Byte offsets at which the lines of the parsed text (original or rewritten) start.
    line_starts: Vec<usize>,
    normalised: Option<&'a hcl1::Normalised>,
}

impl<'a> HclSource<'a> {
    fn new(text: &str, normalised: Option<&'a hcl1::Normalised>) -> HclSource<'a> {
        let newlines = text.match_indices('\n').map(|(i, _)| i + 1);
        HclSource { line_starts: std::iter::once(0).chain(newlines).collect(), normalised }
    }

    /// The attribute name as written in the policy (see [`hcl1::Normalised::renamed`]).
    fn name_of<'n>(&'n self, name: &'n str) -> &'n str {
        self.normalised.map_or(name, |n| n.original_name(name))
    }

    fn line_of(&self, item: &impl Span) -> usize {
        let offset = item.span().map_or(0, |s| s.start);
        let line = self.line_starts.partition_point(|start| *start <= offset).max(1);
        self.normalised.map_or(line, |n| n.original_line(line))
    }

    fn blocks(&self, body: &Body) -> Result<Vec<RawBlock>, PolicyError> {
        self.check_top_level_keys(body)?;
        let mut blocks = Vec::new();
        for structure in body.iter() {
            match structure {
                Structure::Block(block) if block.ident.as_str() == "path" => blocks.push(self.path_block(block)?),
                Structure::Attribute(attr) if self.name_of(attr.key.as_str()) == "path" => {
                    blocks.push(self.path_attribute(attr)?);
                }
                _ => {}
            }
        }
        Ok(blocks)
    }

    fn check_top_level_keys(&self, body: &Body) -> Result<(), PolicyError> {
        let mut invalid = Vec::new();
        for structure in body.iter() {
            let (name, line) = match structure {
                Structure::Attribute(a) => (self.name_of(a.key.as_str()), self.line_of(a)),
                Structure::Block(b) if b.ident.as_str() == "name" => {
                    return Err(PolicyError::parse("\"name\" must be a string attribute, not a block"));
                }
                Structure::Block(b) => (b.ident.as_str(), self.line_of(b)),
            };
            if name != "name" && name != "path" {
                invalid.push(format!("invalid key {name:?} on line {line}"));
            }
        }
        if invalid.is_empty() { Ok(()) } else { Err(PolicyError::parse(multierror(&invalid))) }
    }

    /// `path "x" { … }`. HCL1 uses the first label and ignores the others; a block without
    /// labels names the pattern `path`.
    fn path_block(&self, block: &Block) -> Result<RawBlock, PolicyError> {
        let key = block.labels.first().map_or("path", BlockLabel::as_str).to_string();
        let mut attrs = Vec::new();
        for structure in block.body.iter() {
            let attr = match structure {
                Structure::Attribute(a) => {
                    let name = self.name_of(a.key.as_str()).to_string();
                    RawAttr { name, line: self.line_of(a), value: evaluate(&a.value) }
                }
                Structure::Block(b) => {
                    RawAttr { name: b.ident.as_str().to_string(), line: self.line_of(b), value: self.block_object(b) }
                }
            };
            attrs.push(attr);
        }
        Ok(RawBlock { key, attrs })
    }

    /// HCL1 reads `allowed_parameters { "x" = [] }` (no `=`) as an object value.
    fn block_object(&self, block: &Block) -> Result<Value, String> {
        if !block.labels.is_empty() {
            return Err("a labelled block is not allowed here".to_string());
        }
        let mut object = Map::new();
        for structure in block.body.iter() {
            let Structure::Attribute(a) = structure else {
                return Err("a nested block is not allowed here".to_string());
            };
            object.insert(self.name_of(a.key.as_str()).to_string(), evaluate(&a.value)?);
        }
        Ok(Value::Object(object))
    }

    /// `path = { … }`: HCL1 reads it as a block for the pattern `path` whose keys are the
    /// object's keys (so `path = { "a" = {…} }` fails with `invalid key "a"`, as in Vault).
    fn path_attribute(&self, attr: &Attribute) -> Result<RawBlock, PolicyError> {
        let key = "path".to_string();
        let line = self.line_of(attr);
        let value = evaluate(&attr.value).map_err(|e| PolicyError::parse(format!("path \"path\": {e}")))?;
        match value {
            Value::Object(map) => Ok(RawBlock { key, attrs: object_attrs(map, |_| line) }),
            _ => Err(PolicyError::parse("path \"path\": cannot check HCL keys of a non-object value")),
        }
    }
}

/// Evaluates a literal expression (strings, numbers, lists, objects, heredocs) to JSON.
/// Variables, functions and `${…}` interpolations of unknown names fail.
fn evaluate(expr: &Expression) -> Result<Value, String> {
    let expr = hcl::Expression::from(expr.clone());
    let value = expr.evaluate(&Context::new()).map_err(|e| e.to_string())?;
    serde_json::to_value(value).map_err(|e| e.to_string())
}

fn object_attrs(map: Map<String, Value>, line: impl Fn(&str) -> usize) -> Vec<RawAttr> {
    map.into_iter().map(|(name, value)| RawAttr { line: line(&name), name, value: Ok(value) }).collect()
}

/// Parses a JSON policy: `{"path": {"<pattern>": {…}, …}}`; `path` may also be a list of
/// such objects, and a pattern's value a list of blocks, as HCL's JSON form allows.
pub fn json_blocks(text: &str) -> Result<Vec<RawBlock>, PolicyError> {
    let root: Value = serde_json::from_str(text).map_err(PolicyError::parse)?;
    let Value::Object(root) = root else {
        return Err(PolicyError::parse("does not contain a root object"));
    };
    let lines = std::cell::RefCell::new(std::collections::HashMap::new());
    let line = |name: &str| *lines.borrow_mut().entry(name.to_string()).or_insert_with(|| json_line(text, name));
    let invalid: Vec<String> = root
        .keys()
        .filter(|k| *k != "name" && *k != "path")
        .map(|k| format!("invalid key {k:?} on line {}", line(k)))
        .collect();
    if !invalid.is_empty() {
        return Err(PolicyError::parse(multierror(&invalid)));
    }
    let mut blocks = Vec::new();
    if let Some(paths) = root.get("path") {
        for group in as_list(paths) {
            let Value::Object(group) = group else {
                return Err(PolicyError::parse("\"path\" must be an object"));
            };
            for (key, body) in group {
                for block in as_list(body) {
                    blocks.push(json_block(key, block, &line)?);
                }
            }
        }
    }
    Ok(blocks)
}

fn json_block(key: &str, body: &Value, line: &impl Fn(&str) -> usize) -> Result<RawBlock, PolicyError> {
    let Value::Object(map) = body else {
        return Err(PolicyError::parse(format!("path {key:?}: the block must be an object")));
    };
    Ok(RawBlock { key: key.to_string(), attrs: object_attrs(map.clone(), line) })
}

fn as_list(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

/// The line of the first `"name"` in the text (JSON values carry no positions).
fn json_line(text: &str, name: &str) -> usize {
    let quoted = format!("\"{name}\"");
    text.find(&quoted).map_or(1, |offset| text[..offset].matches('\n').count() + 1)
}
