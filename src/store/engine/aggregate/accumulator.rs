//! `$group` accumulators (`$sum`, `$avg`, `$min`, `$max`, `$first`, `$last`,
//! `$push`, `$addToSet`, `$count`, `$mergeObjects`).

use std::cmp::Ordering;
use std::collections::HashSet;

use bson::{Bson, Document};

use super::expression::Expr;
use crate::store::engine::compare::{compare_bson, f64_to_decimal, hash_key, type_name, Num};
use crate::store::engine::error::EngineError;
use crate::store::engine::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccKind {
    Sum,
    Avg,
    Min,
    Max,
    First,
    Last,
    Push,
    AddToSet,
    Count,
    MergeObjects,
}

/// One output field of `$group`: `name: {$op: expr}`.
#[derive(Debug, Clone)]
pub(crate) struct AccSpec {
    pub name: String,
    pub kind: AccKind,
    pub expr: Expr,
}

impl AccSpec {
    pub(crate) fn parse(name: &str, v: &Bson) -> Result<AccSpec> {
        let Bson::Document(d) = v else {
            return Err(EngineError::bad(format!(
                "The field '{name}' must be an accumulator object"
            )));
        };
        if d.len() != 1 {
            return Err(EngineError::bad(format!(
                "The field '{name}' must specify one accumulator"
            )));
        }
        let (op, arg) = d
            .iter()
            .next()
            .ok_or_else(|| EngineError::bad("empty accumulator"))?;
        let kind = match op.as_str() {
            "$sum" => AccKind::Sum,
            "$avg" => AccKind::Avg,
            "$min" => AccKind::Min,
            "$max" => AccKind::Max,
            "$first" => AccKind::First,
            "$last" => AccKind::Last,
            "$push" => AccKind::Push,
            "$addToSet" => AccKind::AddToSet,
            "$mergeObjects" => AccKind::MergeObjects,
            "$count" => {
                if !matches!(arg, Bson::Document(a) if a.is_empty()) {
                    return Err(EngineError::bad(
                        "$count takes no arguments, i.e. $count:{}",
                    ));
                }
                AccKind::Count
            }
            "$accumulator" | "$function" => {
                return Err(EngineError::JavaScriptNotAllowed(op.clone()))
            }
            other => return Err(EngineError::UnknownAccumulator(other.to_string())),
        };
        if matches!(arg, Bson::Array(_)) && kind != AccKind::Count {
            return Err(EngineError::bad(format!(
                "The {op} accumulator is a unary operator"
            )));
        }
        let expr = if kind == AccKind::Count {
            Expr::Lit(Bson::Int32(1))
        } else {
            Expr::parse(arg)?
        };
        Ok(AccSpec {
            name: name.to_string(),
            kind,
            expr,
        })
    }
}

/// Running state of one accumulator for one group.
#[derive(Debug, Clone)]
pub(crate) struct Acc {
    kind: AccKind,
    // Sum/Avg: exact integer part, compensated double part, widest type seen.
    int_total: i128,
    dbl_sum: f64,
    dbl_comp: f64,
    widest: u8,
    count: i64,
    value: Option<Bson>,
    seen: bool,
    list: Vec<Bson>,
    set: HashSet<Vec<u8>>,
    doc: Document,
}

impl Acc {
    pub(crate) fn new_simple(kind: AccKind) -> Acc {
        Acc {
            kind,
            int_total: 0,
            dbl_sum: 0.0,
            dbl_comp: 0.0,
            widest: 0,
            count: 0,
            value: None,
            seen: false,
            list: Vec::new(),
            set: HashSet::new(),
            doc: Document::new(),
        }
    }

    fn add_double(&mut self, x: f64) {
        // Neumaier compensated summation (MongoDB uses double-double summation,
        // which this approximates closely).
        let t = self.dbl_sum + x;
        if self.dbl_sum.abs() >= x.abs() {
            self.dbl_comp += (self.dbl_sum - t) + x;
        } else {
            self.dbl_comp += (x - t) + self.dbl_sum;
        }
        self.dbl_sum = t;
    }

    /// Feeds one evaluated value (`None` = missing).
    pub(crate) fn add(&mut self, v: Option<Bson>) -> Result<()> {
        match self.kind {
            AccKind::Sum | AccKind::Avg => {
                if let Some(n) = v.as_ref().and_then(Num::from_bson) {
                    self.count += 1;
                    match n {
                        Num::I32(i) => self.int_total += i as i128,
                        Num::I64(i) => {
                            self.int_total += i as i128;
                            self.widest = self.widest.max(1);
                        }
                        Num::F64(f) => {
                            self.add_double(f);
                            self.widest = self.widest.max(2);
                        }
                        Num::Dec(f) => {
                            self.add_double(f);
                            self.widest = 3;
                        }
                    }
                }
            }
            AccKind::Count => self.count += 1,
            AccKind::Min | AccKind::Max => {
                let Some(x) = v else { return Ok(()) };
                if matches!(x, Bson::Null | Bson::Undefined) {
                    return Ok(());
                }
                let replace = match &self.value {
                    None => true,
                    Some(cur) => {
                        let o = compare_bson(&x, cur);
                        (self.kind == AccKind::Min && o == Ordering::Less)
                            || (self.kind == AccKind::Max && o == Ordering::Greater)
                    }
                };
                if replace {
                    self.value = Some(x);
                }
            }
            AccKind::First => {
                if !self.seen {
                    self.seen = true;
                    self.value = Some(v.unwrap_or(Bson::Null));
                }
            }
            AccKind::Last => {
                self.seen = true;
                self.value = Some(v.unwrap_or(Bson::Null));
            }
            AccKind::Push => {
                if let Some(x) = v {
                    self.list.push(x);
                }
            }
            AccKind::AddToSet => {
                if let Some(x) = v {
                    let mut k = Vec::new();
                    hash_key(&x, &mut k);
                    if self.set.insert(k) {
                        self.list.push(x);
                    }
                }
            }
            AccKind::MergeObjects => match v {
                None | Some(Bson::Null) | Some(Bson::Undefined) => {}
                Some(Bson::Document(d)) => {
                    for (k, x) in d {
                        self.doc.insert(k, x);
                    }
                }
                Some(b) => {
                    return Err(EngineError::expr(format!(
                        "$mergeObjects requires object inputs, but input {} is of type {}",
                        crate::store::engine::compare::fmt_bson(&b),
                        type_name(&b)
                    )))
                }
            },
        }
        Ok(())
    }

    fn total_f64(&self) -> f64 {
        (self.int_total as f64 + self.dbl_sum) + self.dbl_comp
    }

    /// Final value of the accumulator.
    pub(crate) fn finish(self) -> Bson {
        match self.kind {
            AccKind::Sum => match self.widest {
                0 | 1 => {
                    let t = self.int_total;
                    if self.widest == 0 && t >= i32::MIN as i128 && t <= i32::MAX as i128 {
                        Bson::Int32(t as i32)
                    } else if t >= i64::MIN as i128 && t <= i64::MAX as i128 {
                        Bson::Int64(t as i64)
                    } else {
                        Bson::Double(t as f64)
                    }
                }
                2 => Bson::Double(self.total_f64()),
                _ => Bson::Decimal128(f64_to_decimal(self.total_f64())),
            },
            AccKind::Avg => {
                if self.count == 0 {
                    Bson::Null
                } else if self.widest == 3 {
                    Bson::Decimal128(f64_to_decimal(self.total_f64() / self.count as f64))
                } else {
                    Bson::Double(self.total_f64() / self.count as f64)
                }
            }
            AccKind::Count => {
                if self.count <= i32::MAX as i64 {
                    Bson::Int32(self.count as i32)
                } else {
                    Bson::Int64(self.count)
                }
            }
            AccKind::Min | AccKind::Max | AccKind::First | AccKind::Last => {
                self.value.unwrap_or(Bson::Null)
            }
            AccKind::Push | AccKind::AddToSet => Bson::Array(self.list),
            AccKind::MergeObjects => Bson::Document(self.doc),
        }
    }
}
