//! jq expressions: compiling them once with the jaq crates and running them on `serde_json::Value`s.
//!
//! A compiled [`JqProgram`] is immutable, `Send + Sync`, and meant to be shared behind an `Arc` by every node
//! attempt and map item that evaluates it.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data};
use jaq_json::Val;
use serde_json::{Map, Number, Value};

/// Deepest bracket nesting accepted in an expression. The jaq parser and compiler recurse on nesting, so a
/// pathological `((((...))))` must be refused before it reaches them.
pub const MAX_EXPRESSION_NESTING: usize = 64;

/// Deepest value a program may output. Deeper values could not be stored (serde_json refuses to parse them
/// back) and would overflow the stack when dropped.
pub const MAX_OUTPUT_DEPTH: usize = 128;

/// Native filters left out of the standard library: `env` would leak the executor's environment (credentials)
/// into workflow outputs.
const DENIED_FUNCTIONS: &[&str] = &["env"];

type JqData = data::JustLut<Val>;

/// Why an expression did not compile or did not produce a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JqError {
    #[error("invalid jq expression: {0}")]
    Compile(String),
    #[error("jq expression nests deeper than {MAX_EXPRESSION_NESTING} brackets")]
    TooDeep,
    #[error("jq expression failed: {0}")]
    Runtime(String),
    #[error("jq expression produced no output")]
    NoOutput,
    #[error("jq expression called halt")]
    Halted,
    #[error("jq output nests deeper than {MAX_OUTPUT_DEPTH} levels")]
    OutputTooDeep,
}

/// Most compiled programs [`JqProgram::compile_cached`] keeps.
pub const COMPILED_CACHE_ENTRIES: usize = 4096;

/// A compiled jq filter.
pub struct JqProgram {
    source: String,
    filter: jaq_core::Filter<JqData>,
}

impl std::fmt::Debug for JqProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JqProgram").field("source", &self.source).finish_non_exhaustive()
    }
}

impl JqProgram {
    /// Parses and compiles `expr` against jq's standard library (minus [`DENIED_FUNCTIONS`]).
    pub fn compile(expr: &str) -> Result<Self, JqError> {
        if bracket_depth(expr) > MAX_EXPRESSION_NESTING {
            return Err(JqError::TooDeep);
        }
        let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
        let funs = jaq_core::funs()
            .chain(jaq_std::funs())
            .chain(jaq_json::funs())
            .filter(|(name, _, _)| !DENIED_FUNCTIONS.contains(name));
        let arena = Arena::default();
        let program = File { code: expr, path: () };
        let modules =
            Loader::new(defs).load(&arena, program).map_err(|errs| JqError::Compile(describe_load_errors(&errs)))?;
        let filter = Compiler::default().with_funs(funs).compile(modules).map_err(|errs| {
            let names: Vec<String> = errs
                .iter()
                .flat_map(|(_, undefined)| undefined.iter())
                .map(|(name, kind)| format!("undefined {kind:?} `{name}`"))
                .collect();
            JqError::Compile(names.join(", ").to_lowercase())
        })?;
        Ok(Self { source: expr.to_owned(), filter })
    }

    /// Like [`JqProgram::compile`], through a process-wide cache keyed by the expression text. Compiling links
    /// the whole jq standard library and dominated the submit path's CPU (about a fifth of it in the submission
    /// benchmark); submissions mostly repeat the same few workflows, so the same expressions. The cache holds
    /// at most [`COMPILED_CACHE_ENTRIES`] programs and is emptied when full (simple, and a refill is cheap
    /// relative to its rarity). Errors are not cached.
    pub fn compile_cached(expr: &str) -> Result<std::sync::Arc<Self>, JqError> {
        use std::collections::HashMap;
        use std::sync::{Arc, LazyLock, Mutex};
        static CACHE: LazyLock<Mutex<HashMap<String, Arc<JqProgram>>>> = LazyLock::new(Default::default);
        if let Some(hit) = CACHE.lock().unwrap_or_else(|e| e.into_inner()).get(expr) {
            return Ok(hit.clone());
        }
        let program = Arc::new(Self::compile(expr)?);
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= COMPILED_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(expr.to_owned(), program.clone());
        Ok(program)
    }

    /// The expression this program was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Runs the program and returns its first output. Later outputs are not computed (jq's `first(f)`); an
    /// error raised before the first output fails the run, and so does a program producing nothing (`empty`).
    pub fn run(&self, input: Value) -> Result<Value, JqError> {
        let mut outputs = self.outputs(input)?;
        match outputs.next() {
            Some(first) => first,
            None => Err(JqError::NoOutput),
        }
    }

    /// Runs the program and collects all outputs; any error fails the whole run.
    pub fn run_all(&self, input: Value) -> Result<Vec<Value>, JqError> {
        self.outputs(input)?.collect()
    }

    /// Runs the program as a condition: true unless its first output is `false` or `null` (jq truthiness).
    pub fn run_condition(&self, input: Value) -> Result<bool, JqError> {
        let value = self.run(input)?;
        Ok(!matches!(value, Value::Null | Value::Bool(false)))
    }

    fn outputs(&self, input: Value) -> Result<impl Iterator<Item = Result<Value, JqError>> + '_, JqError> {
        let input = json_to_val(input)?;
        let ctx = Ctx::<JqData>::new(&self.filter.lut, Vars::new([]));
        Ok(self.filter.id.run((ctx, input)).map(|out| match out {
            Ok(val) => val_to_json(&val),
            // `halt` is an exception, not an error: never let it reach jaq's helpers that exit the process.
            Err(exn) => match exn.get_err() {
                Ok(err) => Err(JqError::Runtime(err.to_string())),
                Err(_) => Err(JqError::Halted),
            },
        }))
    }
}

/// Deepest nesting of `(`, `[` and `{` in `expr`, counted without parsing (brackets in strings count too, which
/// only ever overestimates).
fn bracket_depth(expr: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for c in expr.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fn describe_load_errors<P>(errs: &jaq_core::load::Errors<&str, P>) -> String {
    use jaq_core::load::Error;
    let mut parts = Vec::new();
    for (file, err) in errs {
        match err {
            Error::Io(items) => parts.extend(items.iter().map(|(path, msg)| format!("{path}: {msg}"))),
            Error::Lex(items) => parts.extend(
                items
                    .iter()
                    .map(|(expect, at)| format!("expected {} at offset {}", expect.as_str(), offset(file.code, at))),
            ),
            Error::Parse(items) => parts.extend(
                items
                    .iter()
                    .map(|(expect, at)| format!("expected {} at offset {}", expect.as_str(), offset(file.code, at))),
            ),
        }
    }
    parts.join("; ")
}

/// Byte offset of `part` (a sub-slice of `whole` handed back by the parser) inside `whole`.
fn offset(whole: &str, part: &str) -> usize {
    (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize)
}

/// serde_json values come from parsed documents (serde_json caps their nesting at 128), so the serde route
/// jaq-json offers is safe here.
fn json_to_val(value: Value) -> Result<Val, JqError> {
    use serde::Deserialize;
    Val::deserialize(value).map_err(|e| JqError::Runtime(e.to_string()))
}

type ObjIter<'a> = Box<dyn Iterator<Item = (&'a Val, &'a Val)> + 'a>;

/// Converts a jaq value to JSON without recursion. Non-finite numbers become `null` (as in jq), byte strings
/// and text are decoded as UTF-8 (lossily), and non-string object keys are written as their JSON text.
pub(crate) fn val_to_json(val: &Val) -> Result<Value, JqError> {
    enum Frame<'a> {
        Arr(std::slice::Iter<'a, Val>, Vec<Value>),
        Obj(ObjIter<'a>, Map<String, Value>, Option<String>),
    }
    // Each step either finishes a scalar (which goes to the parent frame) or opens a container frame.
    let mut stack: Vec<Frame<'_>> = Vec::new();
    let mut next: Option<&Val> = Some(val);
    loop {
        let finished = match next.take() {
            Some(v) => match v {
                Val::Arr(items) => {
                    if stack.len() >= MAX_OUTPUT_DEPTH {
                        return Err(JqError::OutputTooDeep);
                    }
                    stack.push(Frame::Arr(items.iter(), Vec::with_capacity(items.len())));
                    None
                }
                Val::Obj(map) => {
                    if stack.len() >= MAX_OUTPUT_DEPTH {
                        return Err(JqError::OutputTooDeep);
                    }
                    stack.push(Frame::Obj(Box::new(map.iter()), Map::new(), None));
                    None
                }
                scalar => Some(scalar_to_json(scalar)),
            },
            None => None,
        };
        if let Some(value) = finished {
            match stack.last_mut() {
                None => return Ok(value),
                Some(Frame::Arr(_, out)) => out.push(value),
                Some(Frame::Obj(_, out, key)) => {
                    out.insert(key.take().unwrap_or_default(), value);
                }
            }
        }
        // Advance the innermost container: either hand out its next child or close it.
        let closed = match stack.last_mut() {
            None => continue,
            Some(Frame::Arr(iter, _)) => match iter.next() {
                Some(child) => {
                    next = Some(child);
                    continue;
                }
                None => true,
            },
            Some(Frame::Obj(iter, _, key)) => match iter.next() {
                Some((k, child)) => {
                    *key = Some(key_to_string(k));
                    next = Some(child);
                    continue;
                }
                None => true,
            },
        };
        if closed {
            let value = match stack.pop() {
                Some(Frame::Arr(_, out)) => Value::Array(out),
                Some(Frame::Obj(_, out, _)) => Value::Object(out),
                None => continue,
            };
            match stack.last_mut() {
                None => return Ok(value),
                Some(Frame::Arr(_, out)) => out.push(value),
                Some(Frame::Obj(_, out, key)) => {
                    out.insert(key.take().unwrap_or_default(), value);
                }
            }
        }
    }
}

fn scalar_to_json(val: &Val) -> Value {
    match val {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => num_to_json(n),
        Val::TStr(bytes) | Val::BStr(bytes) => Value::String(String::from_utf8_lossy(bytes).into_owned()),
        // Containers never reach here; keep the conversion total anyway.
        other => Value::String(other.to_string()),
    }
}

fn num_to_json(num: &jaq_json::Num) -> Value {
    use jaq_json::Num;
    match num {
        Num::Int(i) => Value::Number(Number::from(*i as i64)),
        Num::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Num::BigInt(_) | Num::Dec(_) => {
            let text = num.to_string();
            if let Ok(i) = text.parse::<i64>() {
                Value::Number(Number::from(i))
            } else if let Ok(u) = text.parse::<u64>() {
                Value::Number(Number::from(u))
            } else {
                text.parse::<f64>().ok().and_then(Number::from_f64).map_or(Value::Null, Value::Number)
            }
        }
    }
}

fn key_to_string(key: &Val) -> String {
    match key {
        Val::TStr(bytes) | Val::BStr(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
#[path = "jq_tests.rs"]
mod tests;
