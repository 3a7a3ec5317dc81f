//! The byte budget of one aggregation (`--max-aggregate-mb`).
//!
//! The budget counts what a pipeline holds, not only what it reads: every
//! document a stage outputs is measured ([`super::limits::measure_doc`]) and
//! charged as it is produced, the stage's input is released when the stage
//! is done, and state a stage builds on the side (`$group` accumulators, a
//! sort's keys) is charged while it lives. Expressions check the size of a
//! value before they build it ([`check_new_value`]), so `$range`, `$concat`
//! or a `$reduce` cannot allocate past the budget first and fail later.
//!
//! The meter lives in a thread-local for the duration of one
//! [`with_budget`] call: a pipeline runs synchronously on one thread, and
//! expressions deep inside it can check it without every evaluation function
//! carrying it. Without a meter (find projections, filters) only the
//! per-value cap [`MAX_VALUE_BYTES`] applies.

use std::cell::Cell;

use bson::{Bson, Document};

use super::limits::{measure, measure_doc, LimitError, MAX_VALUE_BYTES, MAX_VALUE_DEPTH};

#[derive(Debug, Clone, Copy)]
struct Meter {
    limit: u64,
    used: u64,
    limit_mb: u64,
}

thread_local! {
    static METER: Cell<Option<Meter>> = const { Cell::new(None) };
}

/// Runs `f` under a budget of `limit_mb` megabytes (0 = unlimited; the
/// depth and per-value checks still apply). Nested calls (sub-pipelines)
/// share the outer budget.
pub fn with_budget<T>(limit_mb: u64, f: impl FnOnce() -> T) -> T {
    if METER.with(|m| m.get().is_some()) {
        return f();
    }
    let limit = match limit_mb {
        0 => u64::MAX,
        mb => mb.saturating_mul(1024 * 1024),
    };
    METER.with(|m| {
        m.set(Some(Meter {
            limit,
            used: 0,
            limit_mb,
        }))
    });
    /// Removes the meter however `f` ends (error or panic).
    struct Uninstall;
    impl Drop for Uninstall {
        fn drop(&mut self) {
            METER.with(|m| m.set(None));
        }
    }
    let _uninstall = Uninstall;
    f()
}

/// Adds `bytes` to what the running aggregation holds.
pub fn charge(bytes: u64) -> Result<(), LimitError> {
    METER.with(|m| {
        let Some(mut meter) = m.get() else {
            return Ok(());
        };
        meter.used = meter.used.saturating_add(bytes);
        m.set(Some(meter));
        if meter.used > meter.limit {
            Err(LimitError::Memory {
                limit_mb: meter.limit_mb,
            })
        } else {
            Ok(())
        }
    })
}

/// Charges bytes that are only changing hands (a sort's input becomes its
/// output, released from the input right after): never a new allocation,
/// so never refused.
pub fn hand_over(bytes: u64) {
    METER.with(|m| {
        if let Some(mut meter) = m.get() {
            meter.used = meter.used.saturating_add(bytes);
            m.set(Some(meter));
        }
    })
}

/// Gives back bytes charged earlier (a stage's input once it is consumed).
pub fn release(bytes: u64) {
    METER.with(|m| {
        if let Some(mut meter) = m.get() {
            meter.used = meter.used.saturating_sub(bytes);
            m.set(Some(meter));
        }
    })
}

/// Bytes held right now (tests and diagnostics).
pub fn used() -> u64 {
    METER.with(|m| m.get().map_or(0, |meter| meter.used))
}

/// A document a stage is about to hold: refused when deeper than
/// [`MAX_VALUE_DEPTH`], else charged. Returns the bytes charged.
pub fn hold_doc(doc: &Document) -> Result<u64, LimitError> {
    let size = measure_doc(doc);
    if size.depth > MAX_VALUE_DEPTH {
        return Err(LimitError::too_deep(
            "A document in the pipeline",
            MAX_VALUE_DEPTH,
        ));
    }
    charge(size.bytes)?;
    Ok(size.bytes)
}

/// Called before an expression builds a value of about `bytes`: refused
/// past the remaining budget or past [`MAX_VALUE_BYTES`].
pub fn check_new_value(bytes: u64) -> Result<(), LimitError> {
    METER.with(|m| match m.get() {
        Some(meter) if meter.used.saturating_add(bytes) > meter.limit => Err(LimitError::Memory {
            limit_mb: meter.limit_mb,
        }),
        _ => Ok(()),
    })?;
    if bytes > MAX_VALUE_BYTES {
        return Err(LimitError::ValueTooLarge {
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// A value an expression built step by step (a `$reduce` accumulator):
/// refused when too deep or too large.
pub fn check_built_value(value: &Bson) -> Result<(), LimitError> {
    let size = measure(value);
    if size.depth > MAX_VALUE_DEPTH {
        return Err(LimitError::too_deep(
            "A value built by an expression",
            MAX_VALUE_DEPTH,
        ));
    }
    check_new_value(size.bytes)
}

/// Documents a stage produced, with the bytes charged for them.
#[derive(Debug, Default)]
pub struct HeldDocs {
    pub docs: Vec<Document>,
    pub bytes: u64,
}

impl HeldDocs {
    pub fn with_capacity(n: usize) -> HeldDocs {
        HeldDocs {
            docs: Vec::with_capacity(n),
            bytes: 0,
        }
    }

    /// Measures, checks and charges `doc`, then keeps it.
    pub fn push(&mut self, doc: Document) -> Result<(), LimitError> {
        self.bytes += hold_doc(&doc)?;
        self.docs.push(doc);
        Ok(())
    }

    /// Charges every document of `docs` (a pipeline's input).
    pub fn hold_all(docs: Vec<Document>) -> Result<HeldDocs, LimitError> {
        let mut bytes = 0;
        for doc in &docs {
            bytes += hold_doc(doc)?;
        }
        Ok(HeldDocs { docs, bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn charges_and_refuses_past_the_limit() {
        with_budget(1, || {
            assert!(charge(1024 * 1024).is_ok());
            assert_eq!(charge(1).unwrap_err(), LimitError::Memory { limit_mb: 1 });
            release(1024 * 1024 + 1);
            assert_eq!(used(), 0);
            assert!(check_new_value(512 * 1024).is_ok());
            assert!(check_new_value(2 * 1024 * 1024).is_err());
        });
        // No meter outside: charges are free, values still capped.
        assert!(charge(u64::MAX).is_ok());
        assert_eq!(
            check_new_value(MAX_VALUE_BYTES + 1).unwrap_err().code(),
            2024
        );
    }

    #[test]
    fn nested_budgets_share_the_outer_meter() {
        with_budget(1, || {
            charge(1000).unwrap();
            with_budget(0, || assert_eq!(used(), 1000));
        });
        assert_eq!(used(), 0);
    }

    #[test]
    fn held_documents_are_depth_checked() {
        let mut deep = Bson::Int32(1);
        for _ in 0..MAX_VALUE_DEPTH {
            deep = Bson::Array(vec![deep]);
        }
        let mut held = HeldDocs::default();
        let err = held.push(doc! {"a": deep}).unwrap_err();
        assert_eq!(err.code(), 2021);
        assert!(held.push(doc! {"a": 1}).is_ok());
        assert!(held.bytes > 0);
    }
}
