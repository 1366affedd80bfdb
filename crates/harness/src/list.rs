//! `bench list models|backends|devices`.

use std::fmt::Write;

use anyhow::Result;
use mobilebench_backend::Availability;
use mobilebench_models::published::{self, Agreement, EXCEPTIONS};
use mobilebench_models::sets::{self, NAMED_SETS};
use mobilebench_models::{count_config, zoo::format_alpha};

use crate::registry;

fn agreement_cell(a: Agreement) -> String {
    match a {
        Agreement::Within => "ok".into(),
        Agreement::Excused(_) => "excused*".into(),
        Agreement::Outside => "OUTSIDE".into(),
    }
}

/// Counted vs published figures for the selected models (published ones compared).
pub fn models(selection: &str) -> Result<String> {
    let configs = sets::select(selection)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<42} {:>9} {:>9} {:>8} {:>8} {:>6} {:>6}  check",
        "model", "MACs (M)", "published", "params M", "publishd", "top-1", "8-bit"
    );
    let mut any_excused = false;
    let mut any_v4 = false;
    for cfg in &configs {
        let name = cfg.name();
        match published::lookup(cfg) {
            Some(p) => {
                let c = published::compare(&p);
                any_excused |= matches!(c.macs, Agreement::Excused(_))
                    || matches!(c.params, Agreement::Excused(_));
                let spec = match (p.float.spec_macs_m, p.float.spec_params_m) {
                    (Some(m), Some(pm)) => {
                        any_v4 = true;
                        format!(" (vs the spec's {m} M MACs, {pm} M params; published = paper†)")
                    }
                    _ => String::new(),
                };
                let _ = writeln!(
                    out,
                    "{:<42} {:>9.2} {:>9} {:>8.3} {:>8} {:>6} {:>6}  MACs {}, params {}{spec}",
                    name,
                    c.counted.macs_millions(),
                    p.float.macs_m,
                    c.counted.params_millions(),
                    p.float.params_m,
                    p.float.top1,
                    p.uint8.map_or("–".to_string(), |u| u.top1.to_string()),
                    agreement_cell(c.macs),
                    agreement_cell(c.params),
                );
            }
            None => {
                let c = count_config(cfg);
                let _ = writeln!(
                    out,
                    "{:<42} {:>9.2} {:>9} {:>8.3} {:>8} {:>6} {:>6}  not published",
                    name,
                    c.macs_millions(),
                    "–",
                    c.params_millions(),
                    "–",
                    "–",
                    "–"
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "\n{} models. Tolerance: MACs within 1% or 1 M, params within 2% (V1–V3, slim's figures); \
         MobileNetV4: its spec's figures within half their last digit (±5 M MACs, ±0.005 M params, \
         BN scale and shift counted as the spec does). Classes: 1001 (V1–V3), 1000 (V4).",
        configs.len()
    );
    if any_v4 {
        let _ = writeln!(out, "† MobileNetV4: {}.", published::V4_PAPER_GAP);
    }
    if any_excused {
        let _ = writeln!(
            out,
            "* published cells that disagree with their own definition:"
        );
        for e in EXCEPTIONS {
            let _ = writeln!(out, "  {} ({:?}): {}", e.models, e.field, e.reason);
        }
    }
    let _ = writeln!(out, "\nNamed sets:");
    for (name, what) in NAMED_SETS {
        let _ = writeln!(out, "  {name:<8} {what}");
    }
    let _ = writeln!(
        out,
        "Any width and resolution also works by name, e.g. mobilenet_v3_small_{}_64; globs select published configs, e.g. 'mobilenet_v2_*_224'.",
        format_alpha(0.25)
    );
    Ok(out)
}

pub fn backends() -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<18} {:<12} details", "backend", "status");
    for b in registry::all() {
        let (status, detail) = match crate::children::probe_availability(b.as_ref(), &[]) {
            Availability::Available { detail } => ("available", detail),
            Availability::Unavailable { reason } => ("unavailable", reason),
        };
        let test_only = if b.is_test_only() {
            " [test only, not in `all`]"
        } else {
            ""
        };
        let _ = writeln!(out, "{:<18} {:<12} {detail}{test_only}", b.name(), status);
        let _ = writeln!(out, "{:<18} {:<12} {}", "", "", b.description());
    }
    out
}

pub fn devices() -> Result<String> {
    let mut out = String::new();
    let _ = writeln!(out, "{:<16} {:<6} description", "device", "kind");
    for d in mobilebench_devices::builtin()? {
        let kind = format!("{:?}", d.kind).to_lowercase();
        let _ = writeln!(out, "{:<16} {kind:<6} {}", d.name, d.description);
        if let Some(board) = &d.board {
            let _ = writeln!(out, "{:<23} board: {board}", "");
        }
        if let (Some(core), Some(why)) = (d.core, &d.core_reason) {
            let _ = writeln!(out, "{:<23} pins core {core}: {why}", "");
        }
    }
    let _ = writeln!(
        out,
        "\nA profile file's path works too: bench run --device my-board.toml"
    );
    Ok(out)
}
