//! Reading jsonb without leaving the binary format: payloads are checked and split out of batches
//! as jsonb datums, never printed to text and parsed again.

use crate::errors;
use pgrx::pg_sys::{self, Datum};

const JB_FSCALAR: u32 = 0x1000_0000;
const JB_FOBJECT: u32 = 0x2000_0000;
const JB_FARRAY: u32 = 0x4000_0000;

/// Detoasts if needed and returns the root container of a jsonb datum.
pub fn root(d: Datum) -> (Datum, *mut pg_sys::JsonbContainer) {
    unsafe {
        let jb = pg_sys::pg_detoast_datum(d.cast_mut_ptr()) as *mut pg_sys::Jsonb;
        (Datum::from(jb), &mut (*jb).root)
    }
}

fn header(c: *const pg_sys::JsonbContainer) -> u32 {
    unsafe { (*c).header }
}

pub fn kind_of(c: *const pg_sys::JsonbContainer) -> &'static str {
    let h = header(c);
    if h & JB_FSCALAR != 0 {
        "a scalar"
    } else if h & JB_FOBJECT != 0 {
        "an object"
    } else if h & JB_FARRAY != 0 {
        "an array"
    } else {
        "unknown"
    }
}

pub fn is_object(c: *const pg_sys::JsonbContainer) -> bool {
    header(c) & JB_FOBJECT != 0
}

pub fn is_array(c: *const pg_sys::JsonbContainer) -> bool {
    let h = header(c);
    h & JB_FARRAY != 0 && h & JB_FSCALAR == 0
}

/// Returns the (detoasted) datum when it holds a JSON object; raises 22023 otherwise.
pub fn require_object(d: Datum, name: &str) -> Datum {
    let (d, c) = root(d);
    if !is_object(c) {
        errors::invalid(format!("{name} must be a JSON object, not {}", kind_of(c)));
    }
    d
}

/// One step of a shallow walk over a container: nested containers come back as `Value::Nested`.
pub enum Value {
    /// A nested object or array, as the iterator hands it out (container pointer and byte length).
    Nested(pg_sys::JsonbValue),
    String(String),
    Numeric(Datum),
    Other(&'static str),
}

pub struct Walk {
    it: *mut pg_sys::JsonbIterator,
}

impl Walk {
    pub fn new(c: *mut pg_sys::JsonbContainer) -> Walk {
        Walk { it: unsafe { pg_sys::JsonbIteratorInit(c) } }
    }

    /// Next key or element token with its value; None at the end of the container.
    pub fn next(&mut self) -> Option<(pg_sys::JsonbIteratorToken::Type, Value)> {
        use pg_sys::JsonbIteratorToken::*;
        loop {
            let mut v = pg_sys::JsonbValue { type_: 0, val: unsafe { std::mem::zeroed() } };
            let tok = unsafe { pg_sys::JsonbIteratorNext(&mut self.it, &mut v, true) };
            match tok {
                WJB_DONE => return None,
                WJB_KEY | WJB_VALUE | WJB_ELEM => return Some((tok, convert(&v))),
                _ => continue,
            }
        }
    }
}

#[allow(non_upper_case_globals)]
fn convert(v: &pg_sys::JsonbValue) -> Value {
    use pg_sys::jbvType::*;
    unsafe {
        match v.type_ {
            jbvBinary => Value::Nested(*v),
            jbvString => {
                let s = std::slice::from_raw_parts(v.val.string.val as *const u8, v.val.string.len as usize);
                Value::String(String::from_utf8_lossy(s).into_owned())
            }
            jbvNumeric => Value::Numeric(Datum::from(v.val.numeric)),
            jbvBool => Value::Other("a boolean"),
            jbvNull => Value::Other("null"),
            _ => Value::Other("an unexpected value"),
        }
    }
}

impl Value {
    pub fn container(&self) -> Option<*mut pg_sys::JsonbContainer> {
        match self {
            Value::Nested(v) => Some(unsafe { v.val.binary.data }),
            _ => None,
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Value::Nested(v) => kind_of(unsafe { v.val.binary.data }),
            Value::String(_) => "a string",
            Value::Numeric(_) => "a number",
            Value::Other(what) => what,
        }
    }

    /// A nested object or array as a jsonb datum of its own (a byte copy of its binary form).
    pub fn to_datum(&self) -> Option<Datum> {
        match self {
            Value::Nested(v) => {
                let mut v = *v;
                Some(Datum::from(unsafe { pg_sys::JsonbValueToJsonb(&mut v) }))
            }
            _ => None,
        }
    }
}
