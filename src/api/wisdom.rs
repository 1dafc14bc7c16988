//! Plans in and out as JSON ("wisdom", as FFTW calls it): a server measures its shapes
//! once (`Planning::Measure`), saves what its `Lstm` chose, and starts the next time
//! already tuned.
//!
//! ```json
//! {"format": "lstm-kernels-plans/2",
//!  "stack": {"input": 200, "hidden": [256, 128], "proj": [null, null], "bidirectional": false, "peepholes": false},
//!  "plans": [{"rows": 60, "steps": 20, "threads": 2, "directions_at_once": false,
//!             "cells": [{"by_rows": false, "fuse": true, "backward_by_rows": false}, ...]}]}
//! ```
//!
//! A plan is a matter of speed only (every plan gives the same bits), but one that does
//! not fit the stack is refused: a file is outside data.

use serde_json::{json, Value};

use crate::engine::plan::{CellPlan, Plan, PlanKey};
use crate::model::error::{Error, Result};
use crate::model::spec::LstmSpec;

/// The format tag of a plans file.
pub(crate) const FORMAT: &str = "lstm-kernels-plans/2";

/// What a plans file says of the stack it was made for.
fn stack(spec: &LstmSpec) -> Value {
    json!({
        "input": spec.input_size(),
        "hidden": spec.layers().iter().map(|l| l.hidden_size).collect::<Vec<_>>(),
        "proj": spec.layers().iter().map(|l| l.proj_size).collect::<Vec<_>>(),
        "bidirectional": spec.bidirectional(),
        "peepholes": spec.use_peepholes(),
    })
}

/// `plans` as a plans file for `spec`.
pub(crate) fn to_json(spec: &LstmSpec, plans: &[(PlanKey, Plan)]) -> String {
    let plans: Vec<Value> = plans
        .iter()
        .map(|((rows, steps), p)| {
            json!({
                "rows": rows,
                "steps": steps,
                "threads": p.threads,
                "directions_at_once": p.directions_at_once,
                "cells": p.cells.iter().map(|c| json!({
                    "by_rows": c.by_rows,
                    "fuse": c.fuse,
                    "backward_by_rows": c.backward_by_rows,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"format": FORMAT, "stack": stack(spec), "plans": plans}).to_string()
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Format(format!("plans: {}", msg.into()))
}

fn uint(v: &Value, field: &str) -> Result<usize> {
    v.get(field)
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| bad(format!("`{field}` is not a non-negative integer")))
}

fn flag(v: &Value, field: &str) -> Result<bool> {
    v.get(field)
        .and_then(Value::as_bool)
        .ok_or_else(|| bad(format!("`{field}` is not true or false")))
}

/// The plans of a plans file made for `spec`, each checked against it; plans for more
/// threads than `threads` are left out (made on a larger machine).
pub(crate) fn from_json(
    text: &str,
    spec: &LstmSpec,
    threads: usize,
) -> Result<Vec<(PlanKey, Plan)>> {
    let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    match v.get("format").and_then(Value::as_str) {
        Some(FORMAT) => {}
        other => return Err(bad(format!("format {other:?}, expected {FORMAT:?}"))),
    }
    if v.get("stack") != Some(&stack(spec)) {
        return Err(Error::Config(format!(
            "plans: made for the stack {}, not this one ({})",
            v.get("stack").map_or("?".into(), Value::to_string),
            stack(spec)
        )));
    }
    let list = v
        .get("plans")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("`plans` is not a list"))?;
    let mut plans = Vec::new();
    for (i, p) in list.iter().enumerate() {
        let cells = p
            .get("cells")
            .and_then(Value::as_array)
            .ok_or_else(|| bad(format!("plan {i}: `cells` is not a list")))?
            .iter()
            .map(|c| {
                Ok(CellPlan {
                    by_rows: flag(c, "by_rows")?,
                    fuse: flag(c, "fuse")?,
                    backward_by_rows: flag(c, "backward_by_rows")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let plan = Plan {
            threads: uint(p, "threads")?,
            directions_at_once: flag(p, "directions_at_once")?,
            cells,
        };
        if plan.threads > threads {
            continue;
        }
        plan.check(spec, threads)
            .map_err(|e| bad(format!("plan {i}: {e}")))?;
        plans.push(((uint(p, "rows")?, uint(p, "steps")?), plan));
    }
    Ok(plans)
}
