"""docs/benchmarks.md from one run's measurements: every engine judged against this CPU's limit for its precision."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks import cold_starts, roofline
from benchmarks.contenders import BATCHES, COPY_BYTES, ENGINES, MATMUL_SIZE, WEIGHT_QUANTIZATION_OFF, phone_photo
from benchmarks.models import FLOAT_DEPTHWISE
from benchmarks.paths import PACKAGE_MODEL, PHOTO, ROOT

# The vector instructions int8 and float32 speed hang on: without a VNNI flag, an int8 dot product takes two
# AVX2 instructions (vpmaddubsw, vpmaddwd) where VNNI takes one, so int8 gains far less over float32.
VECTOR_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni")
TARGETS = {  # from the issues
    "limit": 1.5,  # every onnx engine, batch 1, within this many times the limit for its precision
    # the default engine against the seed's way: the int8 model gains less where int8 has no VNNI
    "seed_speedup": {
        "EfficientNet-Lite0 (built)": {"VNNI": 20.0, "no VNNI": 12.0},
        "InceptionV3 (random weights)": {"VNNI": 2.5, "no VNNI": 2.5},
    },
    "phone_speedup": {"EfficientNet-Lite0 (built)": 8.0},
    cold_starts.PREDICT: 0.5,
    "page_ratio": 1.3,  # run-demo to its verdicts, against the least Streamlit page
    "neither_ms": 0.5,
}


def ms(times: list[float], q: float = 50) -> float:
    return 1000 * float(np.percentile(times, q))


def rates(samples: dict) -> roofline.Rates:
    def rate(call: str, work: float) -> float:
        return work / float(np.median(samples[("limits", call)]))

    return roofline.Rates(
        float32=rate("matmul", 2 * MATMUL_SIZE**3),
        int8=rate("int8 matmul", 2 * MATMUL_SIZE**3),
        bandwidth=rate("copy", 2 * COPY_BYTES),  # read and written
    )


def digest(measured: dict) -> dict:
    """The numbers the report shows for one model, from its interleaved samples."""
    samples, graphs = measured["samples"], measured["graphs"]
    cpu = rates(samples)
    limits = {name: roofline.limit_ms(nodes, cpu) for name, nodes in graphs.items()}
    rows = {}
    for task in (*ENGINES, "seed"):
        one, decoded = samples[(task, "predict")], samples[(task, "decode+predict")]
        runs = measured["runs"].get(task, "onnx")
        runs = runs if runs in limits else "onnx"  # keras and the seed's way: the float32 .onnx's limit
        rows[task] = {
            "p50": ms(one),
            "p95": ms(one, 95),
            "runs": len(one),
            "decoded": ms(decoded),
            "phone": ms(samples[(task, "decode+predict 12-MP")]),
            "limit_ms": limits[runs],
            "precision": "int8" if runs == "onnx-int8" else "float32",
            "throughput": {
                size: size / float(np.median(samples[(task, f"batch {size}")]))
                for size in BATCHES
                if (task, f"batch {size}") in samples
            },
            "peak_mb": measured["peak_mb"][task],
        }
        rows[task]["limit"] = rows[task]["p50"] / rows[task]["limit_ms"]
        if (task, "neither decision") in samples:
            rows[task]["neither_ms"] = ms(samples[(task, "neither decision")])
    for task in ENGINES:
        rows[task]["vs_seed"] = rows["seed"]["p50"] / rows[task]["p50"]
        rows[task]["vs_seed_decoded"] = rows["seed"]["decoded"] / rows[task]["decoded"]
        rows[task]["vs_seed_phone"] = rows["seed"]["phone"] / rows[task]["phone"]
    sessions = {call: ms(times) for (task, call), times in samples.items() if task == "onnx" and call in limits}
    return {
        "rows": rows,
        "rates": cpu,
        "limits": limits,
        "sessions": sessions,  # bare sessions of the int8 model and its depthwise-in-float32 variant, p50 ms
        "float32_rates": [2 * MATMUL_SIZE**3 / t / 1e9 for t in samples[("limits", "matmul")]],
        "gflop": sum(node.flops for node in graphs["onnx"]) / 1e9,
        "rounds": measured["rounds"],
        "runs": measured["runs"],
    }


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def met(value: float, limit: float, at_least: bool = False) -> str:
    return "yes" if (value >= limit if at_least else value <= limit) else "**no**"


def vnni(info: dict) -> str:
    return "VNNI" if any(flag in info["vector_flags"] for flag in VNNI_FLAGS) else "no VNNI"


def render(
    info: dict, measured: dict, cold: list[dict], sizes: list[list], loads: list, seconds: float, notes: list[str]
) -> str:
    from tests.corpus import PHONE_QUALITY, PHONE_SIZE

    digests = {model: digest(m) for model, m in measured.items()}
    blas = next(iter(measured.values()))["blas"]
    photo = f"{PHOTO.relative_to(ROOT / 'muffin_v_chihuahua' / 'data')} ({PHOTO.stat().st_size / 1e3:.0f} kB)"
    kernels = roofline.mlas_kernels(set(info["vector_flags"]))
    parts = [
        "# Benchmarks",
        "",
        f"Written by `make bench` ({info['finished']:%Y-%m-%d %H:%M} UTC, {seconds:.0f} s). "
        "The machine is shared and absolute times drift with its load; the ratios hold better: the contenders "
        "for each model (onnx, keras, the seed's way and this CPU's limits) ran in turns, round after round, "
        "each in its own process.",
        "",
        f"- CPU: {info['cpu']}, {info['cores']} cores usable, vector instructions "
        f"{', '.join(info['vector_flags']) or 'none of ' + ', '.join(VECTOR_FLAGS)} ({vnni(info)}); BLAS: {blas}",
        "- the kernels ONNX Runtime runs on it: ONNX Runtime reports the ops it runs (below, per model file), not "
        "which of MLAS's kernels (its CPU library) run them; MLAS picks those from the CPU's flags as it loads "
        "(onnxruntime/core/mlas/lib/platform.cpp): " + "; ".join(f"{what}: **{k}**" for what, k in kernels.items()),
        f"- load average (1, 5, 15 min) at start {loads[0]}, at end {loads[1]}",
        "- this CPU's limits, measured between the turns ("
        + ", ".join(f"{model}: {d['rounds']} rounds" for model, d in digests.items())
        + "): "
        + f"float32 peak = numpy's float32 matrix multiply ({MATMUL_SIZE}x{MATMUL_SIZE}, all cores); int8 peak = ONNX "
        "Runtime's uint8 × int8 one (MatMulInteger, the same size: the kernels behind the int8 model's convolutions); "
        f"bandwidth = a numpy copy of {COPY_BYTES / 2**20:.0f} MiB (read + written; the size of these models' "
        "activations, which stay in the caches): "
        + "; ".join(
            f"{model} rounds median **{d['rates'].float32 / 1e9:.0f} GFLOP/s** float32 (from "
            f"{min(d['float32_rates']):.0f} to {max(d['float32_rates']):.0f}), **{d['rates'].int8 / 1e9:.0f} GOP/s** "
            f"int8 ({d['rates'].int8 / d['rates'].float32:.2f}×), **{d['rates'].bandwidth / 1e9:.0f} GB/s**"
            for model, d in digests.items()
        ),
        "- a model file's limit (its roofline): the sum over its nodes of max(FLOPs / its precision's peak, bytes / "
        "bandwidth), FLOPs and bytes (inputs, weights, outputs) counted from the ONNX graph as ONNX Runtime runs it "
        "(benchmarks/roofline.py): "
        + "; ".join(
            f"{model} {d['gflop']:.2f} GFLOP, "
            + ", ".join(f"{name} {limit:.2f} ms" for name, limit in d["limits"].items())
            for model, d in digests.items()
        ),
        "- versions: " + ", ".join(f"{name} {version}" for name, version in info["versions"].items()),
        f"- photo: {photo}. Warm latency: `Classifier.predict` on one decoded image, after warm-up; 'with "
        "decoding' adds `images.decode` of the photo's bytes (the seed's way: PIL open and resize); 'a 12-MP "
        f"JPEG' is the photo as a phone saves one ({PHONE_SIZE[0]}x{PHONE_SIZE[1]}, quality {PHONE_QUALITY}, "
        f"{len(phone_photo()) / 1e3:.0f} kB, made at bench time)",
        *[f"- {note}" for note in notes],
        "",
        "## Against this CPU's limits (batch 1, p50 against p50, same rounds)",
        "",
        table(["model", "contender", "p50 ms", "its limit ms", "measured", "target", "met"], judged(info, digests)),
        "",
        "## Warm: the model loaded, batch 1 unless said",
        "",
        warm(digests),
        "",
        "## Where the time goes: each kind of node against its own limit",
        "",
        "ONNX Runtime's profiler, batch 1, the engine's session options, for each model file the onnx engine runs. "
        "A kind's limit is the sum of its nodes' (max(FLOPs / peak, bytes / bandwidth)); 'memory-bound' counts "
        "the nodes whose bytes take longer than their FLOPs. GOP/s: what the kind reached (multiply-adds × 2).",
        "",
        *(part for model, m in measured.items() for part in where_the_time_goes(model, m, digests[model])),
        *depthwise_decision(measured, digests),
        "## Cold: a fresh process (median of the runs)",
        "",
        cold_table(cold),
        "",
        "Peak RSS: `predict` from wait4 (the process); the servers from VmHWM, added up over their process "
        "group (`run-demo` and the Streamlit server it starts). The least Streamlit page ran in turns with "
        "`run-demo`, from the app's venv, with run-demo's Streamlit options.",
        "",
        page_phases(cold),
        "",
        "## Sizes",
        "",
        table(["what", "size"], sizes),
        "",
        "## Other targets",
        "",
        table(["target", "measured", "met"], other_targets(digests, cold)),
        "",
        neither_curve(json.loads((PACKAGE_MODEL / "card.json").read_text())["neither"]),
    ]
    return "\n".join(parts)


def judged(info: dict, digests: dict) -> list[list]:
    """Each engine against the limit for its precision; the seed's way against the float32 one (the most any float32
    engine could gain on it); the default engine against the seed's way."""
    rows = []
    for model, d in digests.items():
        for task in (*ENGINES, "seed"):
            r = d["rows"][task]
            name = (
                f"{task}: runs {d['runs'][task]}"
                if task in ENGINES
                else "the seed's way: `model.predict` per PIL image (over the float32 limit: the most a float32 "
                "engine could gain on it)"
            )
            target = f"≤ {TARGETS['limit']}×" if task.startswith("onnx") else "–"
            rows.append(
                [
                    model,
                    name,
                    f"{r['p50']:.1f}",
                    f"{r['limit_ms']:.2f} ({r['precision']})",
                    f"{r['limit']:.2f}×",
                    target,
                    met(r["limit"], TARGETS["limit"]) if task.startswith("onnx") else "–",
                ]
            )
        onnx, targets = d["rows"]["onnx"], TARGETS["seed_speedup"][model]
        limit = targets[vnni(info)]
        where = f" ({vnni(info)})" if len(set(targets.values())) > 1 else ""
        speedup = min(onnx["vs_seed"], onnx["vs_seed_decoded"])
        rows.append(
            [
                model,
                "onnx (default) against the seed's way (the lower of without and with decoding)",
                "–",
                "–",
                f"{speedup:.1f}× faster ({onnx['vs_seed']:.1f}×, {onnx['vs_seed_decoded']:.1f}×)",
                f"≥ {limit}×{where}",
                met(speedup, limit, at_least=True),
            ]
        )
    return rows


def warm(digests: dict) -> str:
    rows = []
    for model, d in digests.items():
        names = {task: f"{task}: runs {d['runs'][task]}" for task in ENGINES}
        for task, name in [*names.items(), ("seed", "seed's way: `model.predict` per PIL image")]:
            r = d["rows"][task]
            rows.append(
                [
                    model,
                    name,
                    f"{r['p50']:.1f}",
                    f"{r['p95']:.1f}",
                    r["runs"],
                    f"{r['decoded']:.1f}",
                    f"{r['phone']:.1f}",
                    *(f"{r['throughput'][b]:.1f}" if b in r["throughput"] else "–" for b in BATCHES),
                    f"{r['peak_mb']:.0f}",
                ]
            )
    header = [
        "model",
        "engine",
        "p50 ms",
        "p95 ms",
        "runs",
        "with decoding p50 ms",
        "with decoding a 12-MP JPEG p50 ms",
    ]
    return table([*header, *(f"batch {b} img/s" for b in BATCHES), "peak RSS MB"], rows)


def where_the_time_goes(model: str, measured: dict, d: dict) -> list[str]:
    parts = []
    for name, profile in measured["profiles"].items():
        kinds = roofline.by_kind(measured["graphs"][name], d["rates"])
        total = sum(profile["kinds"].values())
        rows = [
            [
                label,
                f"{int(kinds[kind]['nodes'])} ({int(kinds[kind]['memory_bound'])})",
                f"{kinds[kind]['flops'] / 1e9:.3f}",
                f"{kinds[kind]['bytes'] / 1e6:.1f}",
                f"{kinds[kind]['least_ms']:.3f}",
                f"{profile['kinds'].get(kind, 0):.2f}",
                f"{profile['kinds'].get(kind, 0) / total:.0%}",
                f"{profile['kinds'].get(kind, 0) / kinds[kind]['least_ms']:.1f}×",
                f"{kinds[kind]['flops'] / profile['kinds'][kind] / 1e6:.0f}"
                if kinds[kind]["flops"] and profile["kinds"].get(kind)
                else "–",
            ]
            for kind, label in roofline.KINDS.items()
            if kind in kinds
        ]
        kernels = sorted(profile["kernels"].items(), key=lambda item: -item[1]["ms"])
        parts += [
            f"### {model}, {name} ({total:.2f} ms in its nodes, its limit {d['limits'][name]:.2f} ms)",
            "",
            table(
                [
                    "nodes",
                    "count (memory-bound)",
                    "GFLOP",
                    "MB moved",
                    "limit ms",
                    "profiled ms",
                    "share of time",
                    "× limit",
                    "GOP/s",
                ],
                rows,
            ),
            "",
            "The kernels ONNX Runtime ran: "
            + "; ".join(
                f"{kernel} ×{k['count']:.0f}"
                + (f" ({k['nchwc']:.0f} in NCHWc blocks)" if k["nchwc"] else "")
                + f": {k['ms']:.2f} ms"
                for kernel, k in kernels
            )
            + ".",
            "",
        ]
    return parts


def depthwise_decision(measured: dict, digests: dict) -> list[str]:
    """Whether the int8 model's depthwise convolutions should run in float32, or be fused, from this run's figures."""
    model = next((model for model, m in measured.items() if FLOAT_DEPTHWISE in m["profiles"]), None)
    if model is None:
        return []
    m, d = measured[model], digests[model]
    quantized, in_float = d["sessions"][WEIGHT_QUANTIZATION_OFF], d["sessions"][FLOAT_DEPTHWISE]
    int8_ms = {name: m["profiles"][name]["kinds"].get("depthwise", 0.0) for name in ("onnx-int8", FLOAT_DEPTHWISE)}
    nodes = [node for node in m["graphs"]["onnx-int8"] if node.kind == "depthwise"]
    share = int8_ms["onnx-int8"] / sum(m["profiles"]["onnx-int8"]["kinds"].values())
    limit_ms = roofline.limit_ms(nodes, d["rates"])
    gops = sum(node.flops for node in nodes) / int8_ms["onnx-int8"] / 1e6
    # Fused with the pointwise convolution after it, a depthwise convolution's output would never be written and
    # read back: the most fusing can save is that round trip at the copy's bandwidth.
    round_trip_ms = 1000 * 2 * sum(node.written for node in nodes) / d["rates"].bandwidth
    float_better = in_float < quantized
    return [
        "## Depthwise convolutions: int8, float32, or fused",
        "",
        f"In the int8 model ({model}) its {len(nodes)} depthwise convolutions take {int8_ms['onnx-int8']:.2f} ms, "
        f"{share:.0%} of its nodes' time, at {gops:.0f} GOP/s: {int8_ms['onnx-int8'] / limit_ms:.1f}× "
        "their limit.",
        "",
        f"- **Kept in float32** (builders/quantize.py leaving them out, and ONNX Runtime's own weight quantization "
        f"off, which would quantize them again between their QDQ pairs; off in both sessions compared): "
        f"{in_float:.2f} ms against {quantized:.2f} ms quantized (bare sessions, p50, same rounds), "
        f"{in_float / quantized:.2f}×; the depthwise convolutions themselves {int8_ms[FLOAT_DEPTHWISE]:.2f} ms "
        f"in float32 against {int8_ms['onnx-int8']:.2f} ms in int8 (profiled), and the float32 ones need their "
        "tensors dequantized, quantized and laid out again around them. "
        + (
            "**Worth it here**: the build should keep them in float32 on this CPU."
            if float_better
            else "**Not worth it**: they stay quantized."
        ),
        f"- **Fused** with the pointwise convolution after each (ONNX Runtime has no such fusion; it would take a "
        f"kernel of our own): the most it could save is each output's round trip through memory, "
        f"{round_trip_ms:.2f} ms at the copy's bandwidth, "
        f"{round_trip_ms / int8_ms['onnx-int8']:.0%} of their time: "
        + (
            "**worth trying**."
            if round_trip_ms > 0.25 * int8_ms["onnx-int8"]
            else "**not worth a kernel of our own**: their time goes to computing, not to memory."
        ),
        "",
    ]


def cold_table(cold: list[dict]) -> str:
    rows = []
    for row in cold:
        seconds = f"{row['ms']:.0f} ms" if "ms" in row else f"{row['seconds']:.2f}"
        if "heavy" in row:
            seconds += f" (imports {', '.join(row['heavy']) or 'neither numpy nor PIL'})"
        rows.append(
            [
                row["what"],
                row["engine"],
                Path(row["venv"]).name,
                seconds,
                row["runs"],
                f"{row['peak_mb']:.0f}" if "peak_mb" in row else "–",
            ]
        )
    return table(["what", "engine", "venv", "seconds", "runs", "peak RSS MB"], rows)


def page_phases(cold: list[dict]) -> str:
    seconds = {row["what"]: row["seconds"] for row in cold if row.get("engine") == "onnx" and "seconds" in row}
    health, loaded = (
        seconds["`run-demo`, to /_stcore/health 200"],
        seconds["`run-demo`, to Streamlit's frontend loaded in Chromium"],
    )
    bare = next(row for row in cold if row["what"] == cold_starts.BARE and row["engine"] == "onnx")
    return (
        f"`run-demo` with onnx, {seconds[cold_starts.PAGE]:.2f} s to the verdicts, {bare['page'] / bare['seconds']:.2f}× "
        f"the least Streamlit page's {bare['seconds']:.2f} s: the server answers its health check at {health:.2f} s "
        f"(the least page's at {bare['health_seconds']:.2f} s), Chromium has loaded Streamlit's frontend "
        f"{loaded - health:.2f} s later, and the page's first run (its imports, loading the model, three predictions) "
        f"and rendering take {seconds[cold_starts.PAGE] - loaded:.2f} s more (the least page's "
        f"{bare['seconds'] - bare['loaded_seconds']:.2f} s)."
    )


def page_ratio(cold: list[dict], engine: str, apart: str = "") -> float | None:
    """run-demo's seconds to its verdicts over the least page's (with apart: Chromium on its own core), if measured."""
    bares = [row for row in cold if row["what"] == cold_starts.BARE + apart and row["engine"] == engine]
    return bares[0]["page"] / bares[0]["seconds"] if bares else None


def other_targets(digests: dict, cold: list[dict]) -> list[list]:
    rows = [
        [
            f"{model}: onnx, a 12-MP phone JPEG to its verdict at least {limit}× faster than the seed's way",
            f"{digests[model]['rows']['onnx']['vs_seed_phone']:.2f}×",
            met(digests[model]["rows"]["onnx"]["vs_seed_phone"], limit, at_least=True),
        ]
        for model, limit in TARGETS["phone_speedup"].items()
    ]
    rows += [
        [
            f'{model}: onnx, the "neither" decision under {TARGETS["neither_ms"]} ms a photo',
            f"{digests[model]['rows']['onnx']['neither_ms']:.2f} ms",
            met(digests[model]["rows"]["onnx"]["neither_ms"], TARGETS["neither_ms"]),
        ]
        for model in digests
        if "neither_ms" in digests[model]["rows"]["onnx"]
    ]
    predict = next(row for row in cold if row["what"] == cold_starts.PREDICT and row["engine"] == "onnx")
    rows.append(
        [
            f"{cold_starts.PREDICT}, onnx, under {TARGETS[cold_starts.PREDICT]} s",
            f"{predict['seconds']:.2f} s",
            met(predict["seconds"], TARGETS[cold_starts.PREDICT]),
        ]
    )
    for apart in ("", cold_starts.APART):
        ratio = page_ratio(cold, "onnx", apart)
        if ratio is not None:
            rows.append(
                [
                    f"{cold_starts.PAGE}{apart}, onnx, within {TARGETS['page_ratio']}× the least Streamlit page's "
                    "(in turns)",
                    f"{ratio:.2f}×",
                    met(ratio, TARGETS["page_ratio"]),
                ]
            )
    return rows


def neither_curve(rule: dict) -> str:
    """The built model's "neither" trade-off, as its card records it (cross-validated on the dataset)."""
    rows = [
        [
            f"**{point['threshold']:.2f}** (default)"
            if point["threshold"] == rule["threshold"]
            else f"{point['threshold']:.2f}",
            f"{point['dataset_flagged']:.1%}",
            f"{point['augmented_flagged']:.1%}",
            f"{point['near_misses_caught']:.1%}",
            f"{point['negatives_caught']:.0%}",
        ]
        for point in rule["curve"]
    ]
    return "\n".join(
        [
            '## The "neither" trade-off (the model card\'s, cross-validated)',
            "",
            "As the threshold on the evidence (the verdict's probability against its strongest ImageNet rival) "
            "rises, more real photos are flagged and more near misses caught. The default is the card's: "
            f"{rule['threshold_rule']}. Move it with `--neither-threshold` or `MUFFIN_V_CHIHUAHUA_NEITHER_THRESHOLD`.",
            "",
            table(
                [
                    "threshold",
                    "dataset photos flagged",
                    "augmented copies flagged",
                    "near misses caught",
                    "held-out sample pictures caught",
                ],
                rows,
            ),
        ]
    )
