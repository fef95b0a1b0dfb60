//! Result lines (one JSON object per run) as markdown: every row, and streampod as a
//! ratio of the floor for each scenario, against issue 16's targets.

use serde_json::{json, Value};

/// Result lines of `file`, skipping any that do not parse.
pub(crate) fn rows(file: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Whether a run measured the generator rather than the server: the generator's own
/// process used 95 % or more of a core over the measured phase.
fn generator_bound(r: &Value) -> bool {
    r["loadgen_process_busy_percent"]
        .as_f64()
        .is_some_and(|busy| busy >= 95.0)
}

/// Every row, one line each.
pub(crate) fn table(rows: &[Value]) -> String {
    let mut out = String::from("| target | mode | subscribers | load | deliveries/s | server µs/delivery | frame B | p50 ms | p99 ms | max ms | KiB/conn | complete | loadgen CPU % |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let num = |k: &str, digits: usize| {
            r[k].as_f64()
                .map_or("–".to_owned(), |v| format!("{v:.digits$}"))
        };
        let load = match r["mode"].as_str() {
            Some("burst") => format!("{} msgs", r["messages"]),
            Some("storm") if r["joins_room"] == false => "connect + ping at once".to_owned(),
            Some("storm") => "connect + join at once".to_owned(),
            Some("recovery") => format!("{} missed, back at once", r["missed"]),
            Some("presence") => "join at once, then leave at once".to_owned(),
            _ => format!("{}/s × {} s", r["per_second"], r["seconds"]),
        };
        let bound = if generator_bound(r) {
            " generator-bound"
        } else {
            ""
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}/{} | {}{bound} |\n",
            r["target"].as_str().unwrap_or("?"),
            r["mode"].as_str().unwrap_or("?"),
            r["subscribers"],
            load,
            num("deliveries_per_s", 0),
            num("server_cpu_us_per_delivery", 3),
            frame_bytes(r),
            num("p50_ms", 1),
            num("p99_ms", 1),
            num("max_ms", 1),
            num("rss_per_connection_kib", 1),
            r["deliveries"],
            r["expected"],
            r["loadgen_cpu_busy_percent"],
        ));
    }
    out
}

/// A delivery's payload bytes, and its bytes on the wire when compression made them
/// fewer (`wire_bytes` counts headers, so a plain frame's is never fewer).
fn frame_bytes(r: &Value) -> String {
    let payload = r["frame_bytes"].as_f64();
    match (payload, r["wire_bytes"].as_f64()) {
        (Some(payload), Some(wire)) if wire < payload => format!("{payload:.0} (wire {wire:.0})"),
        (Some(payload), _) => format!("{payload:.0}"),
        _ => "–".to_owned(),
    }
}

fn scenario(r: &Value) -> String {
    match r["mode"].as_str() {
        Some("burst") => format!("fan-out, {} subscribers", r["subscribers"]),
        Some("storm") if r["joins_room"] == false => {
            format!("storm, {} clients connect and ping", r["subscribers"])
        }
        Some("storm") => format!("storm, {} clients connect and join", r["subscribers"]),
        Some("recovery") => format!(
            "recovery, {} clients × {} missed messages",
            r["subscribers"], r["missed"]
        ),
        Some("presence") => format!(
            "presence, {} members of one room join, then leave, at once",
            r["subscribers"]
        ),
        _ => format!(
            "latency, {} subscribers × {} msg/s",
            r["subscribers"], r["per_second"]
        ),
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "✓"
    } else {
        "✗"
    }
}

/// One ratio row: `name | ours | floor | ratio | target`.
fn ratio_row(name: &str, ours: &str, floor: &str, ratio: f64, target: &str, ok: bool) -> String {
    format!(
        "| {name} | {ours} | {floor} | {ratio:.2} | {target} {} |\n",
        verdict(ok)
    )
}

/// streampod against the floor, scenario by scenario.
pub(crate) fn ratios(rows: &[Value]) -> String {
    let mut out = String::from(
        "| scenario | streampod | reference | ratio | target |\n|---|---|---|---|---|\n",
    );
    let f = |r: &Value, k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    // Issue 17: a history channel against a plain one, both on streampod.v1, on one
    // server and through Redis.
    let pairs = [
        (
            "streampod-history",
            "streampod-v1",
            "history channel / plain",
        ),
        (
            "streampod-global-history",
            "streampod-global-v1",
            "cluster history channel / plain global",
        ),
    ];
    for (with, without, what) in pairs {
        for history in rows.iter().filter(|r| r["target"] == with) {
            let Some(plain) = rows
                .iter()
                .find(|r| r["target"] == without && scenario(r) == scenario(history))
            else {
                continue;
            };
            let (a, b) = (f(history, "deliveries_per_s"), f(plain, "deliveries_per_s"));
            out.push_str(&ratio_row(
                &format!("{}, {what} (streampod.v1)", scenario(history)),
                &format!("{a:.0}/s"),
                &format!("{b:.0}/s"),
                a / b,
                "≥ 0.90",
                a / b >= 0.90,
            ));
        }
    }
    // Issue 17: time for everyone to recover after reconnecting at once (no reference).
    for r in rows.iter().filter(|r| r["mode"] == "recovery") {
        let seconds = f(r, "recovered_s");
        out.push_str(&ratio_row(
            &format!("{} ({})", scenario(r), r["target"].as_str().unwrap_or("?")),
            &format!(
                "all back in {seconds:.2} s, {}/{} recovered, {:.0} ms CPU per 1,000",
                r["recovered"],
                r["expected"],
                f(r, "server_cpu_ms_per_1000")
            ),
            "–",
            f64::NAN,
            "(reported)",
            r["recovered"] == r["expected"] && seconds.is_finite(),
        ));
    }
    // Issue 17: presence written to Redis by one node (no reference).
    for r in rows.iter().filter(|r| r["mode"] == "presence") {
        let (joins, leaves) = (f(r, "joins_per_s"), f(r, "leaves_per_s"));
        out.push_str(&ratio_row(
            &format!("{} ({})", scenario(r), r["target"].as_str().unwrap_or("?")),
            &format!(
                "{joins:.0} joins/s ({:.0} ms CPU per 1,000), {leaves:.0} leaves/s ({:.0} ms), {} failed",
                f(r, "server_cpu_ms_per_1000_joins"),
                f(r, "server_cpu_ms_per_1000_leaves"),
                r["failed"]
            ),
            "–",
            f64::NAN,
            "(reported)",
            joins.is_finite() && leaves.is_finite() && r["failed"] == 0,
        ));
    }
    for ours in rows.iter().filter(|r| r["target"] == "streampod") {
        let Some(floor) = rows
            .iter()
            .find(|r| r["target"] == "floor" && scenario(r) == scenario(ours))
        else {
            continue;
        };
        let bound = if generator_bound(ours) || generator_bound(floor) {
            " (generator-bound)"
        } else {
            ""
        };
        let name = format!("{}{bound}", scenario(ours));
        match ours["mode"].as_str() {
            Some("burst") => {
                let (a, b) = (f(ours, "deliveries_per_s"), f(floor, "deliveries_per_s"));
                out.push_str(&ratio_row(
                    &name,
                    &format!("{a:.0}/s"),
                    &format!("{b:.0}/s"),
                    a / b,
                    "≥ 0.95",
                    a / b >= 0.95,
                ));
                let (a, b) = (
                    f(ours, "server_cpu_us_per_delivery"),
                    f(floor, "server_cpu_us_per_delivery"),
                );
                out.push_str(&ratio_row(
                    &format!(
                        "server CPU per delivery, {} subscribers",
                        ours["subscribers"]
                    ),
                    &format!("{a:.3} µs"),
                    &format!("{b:.3} µs"),
                    a / b,
                    "≤ 1.15",
                    a / b <= 1.15,
                ));
            }
            Some("storm") => {
                let (a, b) = (f(ours, "joined_s"), f(floor, "joined_s"));
                let failed = ours["failed"].as_u64().unwrap_or(0);
                let dropped = |r: &Value| match r["listen_overflows"].as_u64() {
                    Some(n) if n > 0 => format!(", {n} SYNs dropped at a full accept queue"),
                    _ => String::new(),
                };
                out.push_str(&ratio_row(
                    &name,
                    &format!("all joined in {a:.2} s, {failed} failed{}", dropped(ours)),
                    &format!("{b:.2} s, {} failed{}", floor["failed"], dropped(floor)),
                    a / b,
                    "≤ 1.00, none failed",
                    a / b <= 1.0 && failed == 0,
                ));
                let (a, b) = (
                    f(ours, "server_cpu_ms_per_1000"),
                    f(floor, "server_cpu_ms_per_1000"),
                );
                out.push_str(&ratio_row(
                    &format!(
                        "server CPU per 1,000 clients joined, {}",
                        ours["subscribers"]
                    ),
                    &format!("{a:.0} ms"),
                    &format!("{b:.0} ms"),
                    a / b,
                    "(reported)",
                    true,
                ));
            }
            _ => {
                let (a, b) = (f(ours, "p99_ms"), f(floor, "p99_ms"));
                let limit = if ours["per_second"].as_u64().unwrap_or(0) >= 1000 {
                    1.25
                } else {
                    1.1
                };
                out.push_str(&ratio_row(
                    &name,
                    &format!("p99 {a:.1} ms"),
                    &format!("p99 {b:.1} ms"),
                    a / b,
                    &format!("≤ {limit}"),
                    a / b <= limit,
                ));
            }
        }
    }
    out
}

/// The median line of a scenario's runs: by deliveries/s for bursts, p99 for rates,
/// time until all joined for storms.
pub(crate) fn median(rows: Vec<Value>) -> Option<Value> {
    let mut rows = rows;
    let key = |r: &Value| {
        r["deliveries_per_s"]
            .as_f64()
            .or_else(|| r["p99_ms"].as_f64())
            .or_else(|| r["joined_s"].as_f64())
            .or_else(|| r["recovered_s"].as_f64())
            .unwrap_or(0.0)
    };
    rows.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let middle = rows.len() / 2;
    let mut chosen = rows.get(middle)?.clone();
    chosen["runs"] = json!(rows.len());
    Some(chosen)
}
