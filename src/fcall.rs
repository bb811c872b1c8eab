//! Calling convention: V1 C entry points declared in sql/schema.sql, and typed access to their
//! arguments with the store's NULL/empty checks done up front.

use crate::errors;
use pgrx::pg_sys::{self, Datum};
use pgrx::FromDatum;

/// Declares `$sym` as a V1 C function (with its `pg_finfo_` record) whose body is `$body(Args)`.
/// `#[pg_guard]` turns a Rust panic or a Postgres ERROR into a proper Postgres ERROR at the boundary.
macro_rules! sql_function {
    ($sym:ident, $finfo:ident, $body:path) => {
        #[pgrx::pg_guard]
        #[unsafe(no_mangle)]
        pub unsafe extern "C-unwind" fn $sym(fcinfo: pgrx::pg_sys::FunctionCallInfo) -> pgrx::pg_sys::Datum {
            $body(crate::fcall::Args(fcinfo))
        }

        #[unsafe(no_mangle)]
        #[doc(hidden)]
        pub extern "C" fn $finfo() -> &'static pgrx::pg_sys::Pg_finfo_record {
            const V1: pgrx::pg_sys::Pg_finfo_record = pgrx::pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }
    };
}

#[derive(Clone, Copy)]
pub struct Args(pub pg_sys::FunctionCallInfo);

impl Args {
    pub fn is_null(&self, i: usize) -> bool {
        unsafe { (*self.0).args.as_slice(i + 1)[i].isnull }
    }

    pub fn datum(&self, i: usize) -> Datum {
        unsafe { (*self.0).args.as_slice(i + 1)[i].value }
    }

    pub fn opt_datum(&self, i: usize) -> Option<Datum> {
        (!self.is_null(i)).then(|| self.datum(i))
    }

    /// A text argument that must be present and non-empty: its datum (passed on to SQL as is)
    /// and its value (for checks and messages).
    pub fn required_text(&self, i: usize, name: &str) -> (Datum, String) {
        match self.opt_text(i, name) {
            Some(v) => v,
            None => errors::null_arg(name),
        }
    }

    /// An optional text argument; when present it must be non-empty.
    pub fn opt_text(&self, i: usize, name: &str) -> Option<(Datum, String)> {
        let d = self.opt_datum(i)?;
        let s = unsafe { String::from_datum(d, false) }.unwrap_or_default();
        if s.is_empty() {
            errors::invalid(format!("{name} must not be empty"));
        }
        Some((d, s))
    }

    pub fn opt_i64(&self, i: usize) -> Option<i64> {
        self.opt_datum(i).map(|d| d.value() as i64)
    }

    pub fn required_i64(&self, i: usize, name: &str) -> i64 {
        self.opt_i64(i).unwrap_or_else(|| errors::null_arg(name))
    }

    pub fn opt_i32(&self, i: usize) -> Option<i32> {
        self.opt_datum(i).map(|d| d.value() as i32)
    }

    pub fn required_i32(&self, i: usize, name: &str) -> i32 {
        self.opt_i32(i).unwrap_or_else(|| errors::null_arg(name))
    }

    pub fn required_bool(&self, i: usize, name: &str) -> bool {
        self.opt_datum(i).map(|d| d.value() != 0).unwrap_or_else(|| errors::null_arg(name))
    }

    /// A jsonb argument that must be a JSON object.
    pub fn required_object(&self, i: usize, name: &str) -> Datum {
        let d = self.opt_datum(i).unwrap_or_else(|| errors::null_arg(name));
        crate::jsonb::require_object(d, name)
    }
}

pub fn return_i64(v: i64) -> Datum {
    Datum::from(v)
}

pub fn return_void() -> Datum {
    Datum::from(0)
}
