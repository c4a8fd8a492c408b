"""The Markdown of `gpu.py`: machine and command, the issue's targets marked met / not met, each part's figures,
and every part that failed or was skipped, with why."""

from __future__ import annotations

from typing import Any

from _common import markdown_table

#: (target, goal text, limit): a measured value <= limit meets it.
TARGETS = {
    "stall": ("per-snapshot stall of the training thread (worst snapshot before the last)", "≤ 5 ms", 5.0),
    "ratio": ("`SGDRTrainer` (snapshot every 40 steps) / `Trainer` + `cosine`, wall time", "≤ 1.01×", 1.01),
    "evaluate": ("ensemble `evaluate` / K forward passes of one resident model", "≤ 1.2×", 1.2),
    "load": ("load + verify of the members", "≤ 0.5 s", 0.5),
}


def _met(value: float | None, limit: float) -> str:
    return "not measured" if value is None else ("met" if value <= limit else "not met")


def target_rows(parts: dict[str, dict[str, Any]]) -> list[list[str]]:
    """One row per target, from the parts that succeeded."""
    training = _result(parts, "training")
    ensemble = _result(parts, "ensemble")
    load = _result(parts, "load_verify")
    rows = []
    stall = training and training["max_stall_ms"]
    reported = training and training["reported_stall_ms"]
    extra = f" (reported by the trainer: max {max(reported):.1f} ms)" if reported else ""
    rows.append(("stall", "—" if stall is None else f"{stall:.1f} ms{extra}", stall))
    ratio = training and training["ratio"]
    rows.append(("ratio", "—" if ratio is None else f"{ratio:.3f}×", ratio))
    for size in (ensemble or {}).get("sizes", []):
        first = "" if size["ratio_first"] is None else f"; first call, loading the members: {size['ratio_first']:.2f}×"
        rows.append(("evaluate", f"{size['ratio']:.2f}× at {size['sequences']} sequences{first}", size["ratio"]))
    if not ensemble:
        rows.append(("evaluate", "—", None))
    seconds = load and load["load_verify_s"]
    rows.append(("load", "—" if seconds is None else f"{seconds:.2f} s ({load['members']} members)", seconds))
    return [[TARGETS[key][0], TARGETS[key][1], text, _met(value, TARGETS[key][2])] for key, text, value in rows]


def _result(parts: dict[str, dict[str, Any]], name: str) -> dict[str, Any] | None:
    part = parts.get(name) or {}
    return part.get("result") if part.get("status") == "ok" else None


def render(header: dict[str, Any], parts: dict[str, dict[str, Any]]) -> str:
    """The whole report."""
    machine = header["machine"]
    lines = [
        "# GPU benchmark: snapshots while training, snapshot ensembles at the speed of their forward passes",
        "",
        f"Machine: {machine['device']}; torch {machine['torch']} (CUDA {machine['cuda']}), transformers "
        f"{machine['transformers']}, accelerate {machine['accelerate']}, safetensors "
        f"{machine.get('safetensors', '(not recorded)')}, Python {machine['python']}; hf_sgdr "
        f"{machine['hf_sgdr']} imported from `{machine['hf_sgdr_path']}`.",
        "",
        f"Command: `{header['command']}` ({header['mode']}; {header['seconds']:.0f} s in all).",
        "",
        "## Targets (issue 20)",
        "",
        markdown_table(["target", "goal", "measured", "status"], target_rows(parts)),
        "",
    ]
    lines += _details(parts)
    failed = [(name, part) for name, part in parts.items() if part["status"] != "ok"]
    if failed:
        lines += ["## Parts that did not complete", ""]
        lines += [f"- **{name}**: {part['status']}: {part.get('error', '')}" for name, part in failed]
    return "\n".join(lines)


def _stall_parts(parts: dict[str, Any] | None) -> list[str]:
    """The stall split by the `resets` arm (absent from results recorded before it existed)."""
    if not parts:
        return []

    def ms(values: list[float]) -> str:
        return ", ".join(f"{v:.1f}" for v in values)

    return [
        "Split by a third arm, `SGDRTrainer` with the same restarts and optimizer resets but no snapshots "
        f"(`resets`, wall time {parts['resets_ratio']:.3f}× cosine), per snapshot in ms: the restart (resets less "
        f"cosine, the same two steps) {ms(parts['restart_ms'])}; the snapshot hand-off (sgdr less resets, the same "
        f"two steps) {ms(parts['snapshot_ms'])}; the background write (sgdr less resets, the "
        f"{parts['writer_window']} steps after those) {ms(parts['writer_ms'])}.",
        "",
    ]


def _details(parts: dict[str, dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    training = _result(parts, "training")
    if training:
        runs = ", ".join(f"{r['arm']} {r['seconds']:.2f} s" for r in training["runs"])
        stalls = ", ".join(f"{s:.1f}" for s in training["stall_ms"])
        lines += [
            "## (a) Training: `Trainer` + `cosine` against `SGDRTrainer` with snapshots",
            "",
            f"Timed runs (after one un-timed run of each): {runs}. Median step: "
            + ", ".join(f"{arm} {ms:.1f} ms" for arm, ms in training["median_step_ms"].items())
            + f". Snapshots at steps {training['snapshot_steps']}; stall per snapshot (ms beyond the median step "
            f"over the snapshot's step and the next, less the cosine run's at the same steps): {stalls}.",
            "",
        ]
        lines += _stall_parts(training.get("stall_parts"))
    load = _result(parts, "load_verify")
    if load:
        lines += [
            "## (c) Load + verify",
            "",
            f"{load['members']} members, {load['bytes'] / 1e6:.0f} MB: verified in {load['verify_s']:.2f} s "
            f"(parallel threads; one thread hashes at {load['hash_one_thread_gb_s']:.2f} GB/s: "
            f"{load['hash_one_thread_s']:.2f} s), put on the device in {load['load_to_device_s']:.2f} s; "
            f"{load['resident_members']} resident. Files in the page cache (written just before).",
            "",
        ]
    ensemble = _result(parts, "ensemble")
    if ensemble:
        rows = [
            [
                s["sequences"],
                f"{s['k_forwards_s']:.3f}",
                "" if s["evaluate_first_s"] is None else f"{s['evaluate_first_s']:.3f}",
                f"{s['evaluate_s']:.3f}",
                f"{s['ratio']:.2f}×",
                s["resident_models_peak"],
            ]
            for s in ensemble["sizes"]
        ]
        header = ["sequences", "K forwards (s)", "evaluate, first call (s)", "evaluate (s)", "ratio", "resident peak"]
        lines += [f"## (b) Ensemble of {ensemble['members']} members", "", markdown_table(header, rows), ""]
    stacked = _result(parts, "stacked")
    if stacked:
        seconds = stacked["seconds"]
        lines += [
            "## Stacked forward (`stack_module_state` + `vmap`) against K sequential forwards",
            "",
            f"{stacked['members']} members, {stacked['batches']} batches of {stacked['batch_shape']}: sequential "
            f"{seconds['sequential']:.3f} s, stacked {seconds['stacked']:.3f} s "
            f"({stacked['stacked_over_sequential']:.2f}×); largest logit difference "
            f"{stacked['max_abs_logit_difference']:.2e}.",
            "",
        ]
    recipe = _result(parts, "recipe")
    if recipe:
        lines += [
            "## (d) The README's main job",
            "",
            f"`{recipe['command']}`: {recipe['seconds']:.1f} s.",
            "",
            "```",
            recipe["table"],
            "```",
            "",
        ]
    return lines
