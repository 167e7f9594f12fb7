"""The ``zoo`` command: browse the registry, ask the decision tree, and report comparison sweeps.

    zoo list [PATTERN] [--family F] [--modality M] [--task T] [--markdown]   models with parameter counts
    zoo info NAME                                                metadata, default arguments, tree branch
    zoo select --modality image [--task T] [--accuracy light]   the decision tree's choice and path
    zoo compare SWEEP_DIR [SWEEP_DIR ...] [--out DIR]            (re)write a comparison's report, merging sweeps
    zoo predict CKPT_OR_DIR INPUT... [--top-k K] [--out F]       run a trained model on raw inputs
    zoo export-run RUN_DIR OUT_DIR                               a run -> a save_pretrained folder

None of them imports Lightning or Hydra: parameters are counted on the ``meta`` device (no weights
allocated), and ``compare`` reads the run folders with :mod:`zoo.report`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from zoo.registry import ZooError, create_model, list_models, model_info
from zoo.select import GOALS, as_arguments, mermaid, routes_to, select
from zoo.vocab import DEFAULT_TASK, MODALITIES, TASK_ALIASES, TASKS


def count_params_fast(name: str) -> int:
    """Parameters of ``create_model(name)`` with default kwargs, built on the meta device (no memory, ~ms)."""
    import torch  # here, not at the top: `zoo --help` and `zoo select --mermaid` start without torch

    try:
        with torch.device("meta"):
            model = create_model(name)
    except Exception:  # an initialiser that needs real values: build it for real
        model = create_model(name)
    return sum(p.numel() for p in model.parameters())


def _markdown(rows: list[list[str]]) -> str:
    header, *body = rows
    return "\n".join("| " + " | ".join(r) + " |" for r in (header, ["---"] * len(header), *body))


def _table(rows: list[list[str]], right: Sequence[int] = ()) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, r in enumerate(rows):
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    if args.pretrained:
        return _list_pretrained(args)
    names = list_models(args.pattern, family=args.family, modality=args.modality, task=args.task)
    if not names:
        filters = ", ".join(f"{k}={v}" for k, v in (("family", args.family), ("modality", args.modality),
                                                    ("task", args.task)) if v)
        print(f"no model matches {args.pattern!r}{' with ' + filters if filters else ''}; "
              f"`zoo list` shows all {len(list_models())}.", file=sys.stderr)
        return 1
    rows = [["name", "family", "modality", "tasks", "params", "paper"]]
    for n in names:
        info = model_info(n)
        rows.append([f"`{n}`" if args.markdown else n, info.family, "/".join(info.modalities),
                     ", ".join(info.tasks), f"{count_params_fast(n):,}", info.paper])
    print(_markdown(rows) if args.markdown else _table(rows, right=(4,)))
    return 0


def _list_pretrained(args: argparse.Namespace) -> int:
    from zoo.pretrained import list_shipped, read_config

    rows = [["name", "pretrained", "test metrics", "params", "load it"]]
    for (name, data), folder in list_shipped().items():
        cfg = read_config(folder)  # checks the weights' sha256 too
        metrics = {k: v for k, v in (cfg.get("metrics") or {}).items() if k.startswith("test/")}
        rows.append([f"`{name}`" if args.markdown else name, data,
                     "  ".join(f"{k}={v:.4f}" for k, v in metrics.items()), f"{cfg['weights']['params']:,}",
                     f'zoo.create_model("{name}", pretrained="{data}")'])
    print(_markdown(rows) if args.markdown else _table(rows, right=(3,)))
    return 0


def _route_lines(name: str) -> list[str]:
    routes = routes_to(name)
    if not routes:
        return [f"  not a leaf of the decision tree: name it yourself (model={name})"]
    lines = []
    for route in routes:
        lines.append("  " + " -> ".join(map(str, route)) + f" -> {name}")
        sel_args = as_arguments(route)
        flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in sel_args.items())
        generation = any(d.ask == "kind" and d.answer == "generation" for d in route)  # goal.task=generate
        goals = " ".join(f"goal.{k}={v}" for k, v in sel_args.items() if k in GOALS or k == "task" and generation)
        lines.append(f"    zoo select {flags}   |   python train.py data=... model=auto {goals}".rstrip())
    return lines


def cmd_info(args: argparse.Namespace) -> int:
    info = model_info(args.name)
    sig = ", ".join(f"{k}={v!r}" for k, v in info.defaults.items())
    print(f"{info.name}: {info.paper or 'no paper given'}")
    fields = [("family", info.family), ("modality", "/".join(info.modalities)), ("tasks", ", ".join(info.tasks)),
              ("input shape", str(info.input_shape) if info.input_shape else "see its example function"),
              ("parameters", f"{count_params_fast(info.name):,} (default arguments)"),
              ("builder", f"{info.builder.__module__}.{info.builder.__name__}({sig})")]
    doc = inspect.getdoc(info.builder)
    if doc:
        fields.append(("about", doc.splitlines()[0]))
    for k, v in fields:
        print(f"  {k + ':':13}{v}")
    print(f"default arguments (train it: python train.py model={info.name}; change one: model.KEY=VALUE):")
    print("\n".join(f"  {k}: {v!r}" for k, v in info.defaults.items()) or "  (none)")
    print("selected by the decision tree (zoo select --help):")
    print("\n".join(_route_lines(info.name)))
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    if args.mermaid:
        print(mermaid(), end="")
        return 0
    if not args.modality:
        raise ZooError(f"zoo select needs --modality (one of {', '.join(MODALITIES)}); --mermaid prints the tree.")
    sel = select(args.modality, task=args.task, accuracy=args.accuracy, arch=args.arch, generator=args.generator,
                 sequence=args.sequence, img_size=args.img_size)
    if args.json:
        print(json.dumps(sel.to_dict(), indent=2))
        return 0
    print(sel.name)
    print("  " + " -> ".join(map(str, sel.path)) + f" -> {sel.name}")
    if sel.note:
        print(f"  why: {sel.note}")
    print(f"  train it: python train.py model={sel.name} data=...   (or data=... model=auto with the goal.* "
          "settings above)")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from zoo.report import write_report  # torch and yaml: only `zoo compare` needs them

    report = write_report(args.sweep_dir, out=args.out, metric=args.metric, mode=args.mode, curve=args.curve,
                          threshold=args.threshold, threshold_metric=args.threshold_metric, plots=not args.no_plots)
    print(report.read_text(), end="")
    print(f"-> {report} (+ report.csv, runs.csv{'' if args.no_plots else ', *.png'})")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import csv

    import torch

    from zoo import predict as P

    if args.threads:
        torch.set_num_threads(args.threads)
    model = P.load_any(args.model)
    kind = P.kind_of(model)
    if kind == "generate":
        out = P.sample_images(model, args.out or "samples.png", num=args.num, seed=args.seed)
        print(f"wrote {args.num} samples of {model.zoo_name} to {out}")
        return 0
    if not args.inputs:
        raise ZooError(f"zoo predict {args.model}: give the {kind} model inputs ("
                       + {"classify": "image files, WAV files, CSV files or sentences", "regress": "CSV files", "lm": "a prompt",
                        "seq2seq": "sentences"}[kind] + ").")
    if kind == "lm":
        for prompt in args.inputs:
            print(P.generate_text(model, prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                  seed=args.seed))
        return 0
    if kind == "seq2seq":
        rows = [[src, hyp] for src, hyp in zip(args.inputs, P.translate(model, args.inputs, beam_size=args.beam_size),
                                                strict=True)]
        header = ["input", "translation"]
    elif kind == "regress":
        names, values = P.predict_table(model, args.inputs)
        target = (model.zoo_preprocessing or {}).get("target") or "prediction"
        rows, header = [[name, f"{v:.6g}"] for name, v in zip(names, values, strict=True)], ["input", target]
    else:
        tabular = (model.zoo_preprocessing or {}).get("kind") == "tabular"
        names, preds = (P.predict_table(model, args.inputs, top_k=args.top_k) if tabular
                        else (list(args.inputs), P.classify(model, args.inputs, top_k=args.top_k)))
        header = ["input"] + [c for i in range(1, len(preds[0]) + 1) for c in (f"class_{i}", f"prob_{i}")]
        rows = [[src] + [c for cls, p in top for c in (cls, f"{p:.4f}")] for src, top in zip(names, preds, strict=True)]
    if args.out:
        with open(args.out, "w", newline="") as f:
            csv.writer(f).writerows([header, *rows])
    for row in rows:
        if kind == "seq2seq":
            print(f"{row[0]}\n  -> {row[1]}")
        elif kind == "regress":
            print(f"{row[0]}: {header[1]} = {row[1]}")
        else:
            print(f"{row[0]}: " + ", ".join(f"{row[i]} ({float(row[i + 1]):.3f})" for i in range(1, len(row), 2)))
    if args.out:
        print(f"-> {args.out}")
    return 0


def cmd_export_run(args: argparse.Namespace) -> int:
    from zoo.pretrained import export_run

    out = export_run(args.run_dir, args.out_dir)
    print(f"{args.run_dir} -> {out} (model.safetensors, config.json, README.md); load it with "
          f"zoo.from_pretrained({str(out)!r})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zoo", description="The dnn-zoo model registry and decision tree.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("list", help="registered models with parameter counts")
    s.add_argument("pattern", nargs="?", default="*", help="wildcards, e.g. 'resnet*'")
    s.add_argument("--family")
    s.add_argument("--modality", choices=MODALITIES)
    s.add_argument("--task", choices=TASKS, help=", ".join(TASKS))
    s.add_argument("--markdown", action="store_true", help="a Markdown table (the README's Models table)")
    s.add_argument("--pretrained", action="store_true", help="the trained weights shipped with the package")
    s.set_defaults(fn=cmd_list)

    s = sub.add_parser("info", help="one model: metadata, default arguments, the tree's branch to it")
    s.add_argument("name")
    s.set_defaults(fn=cmd_info)

    s = sub.add_parser("select", help="walk the selection decision tree",
                       description="Walk the selection decision tree (README: 'Choosing a model').")
    s.add_argument("--modality", choices=MODALITIES)
    s.add_argument("--task", help=f"{', '.join(TASKS)} or {', '.join(TASK_ALIASES)} (default: "
                   + ", ".join(f"{m}: {t}" for m, t in DEFAULT_TASK.items()) + ")")
    for key, (default, what) in GOALS.items():
        s.add_argument(f"--{key}", default=default, help=f"{what} (default {default})")
    s.add_argument("--img-size", type=int, help="pixels a side; above 64 the ImageNet ResNet")
    s.add_argument("--json", action="store_true", help="the choice and path as JSON")
    s.add_argument("--mermaid", action="store_true", help="print the whole tree as a mermaid diagram")
    s.set_defaults(fn=cmd_select)

    s = sub.add_parser("compare", help="(re)write the report of a comparison sweep, without retraining",
                       description="(Re)write the report of a comparison sweep from its files, without retraining. "
                       "Several sweep folders of the same experiment (e.g. seeds run on different days) merge into "
                       "one report, written into the first folder or --out.")
    s.add_argument("sweep_dir", type=Path, nargs="+", help="sweep folder(s) a multirun wrote")
    s.add_argument("--out", type=Path, help="where the report goes (default: the first sweep folder)")
    s.add_argument("--metric", help="ranking metric (default: the sweep's, e.g. test/acc)")
    s.add_argument("--mode", choices=("max", "min"))
    s.add_argument("--curve", help="logged metric for the learning curves (default: the metric on val)")
    s.add_argument("--threshold", type=float, help="adds the column 'time to reach it' (default: the sweep's)")
    s.add_argument("--threshold-metric", help="the validation metric the threshold is for (default: the metric "
                   "on val)")
    s.add_argument("--no-plots", action="store_true")
    s.set_defaults(fn=cmd_compare)

    s = sub.add_parser("predict", help="run a trained model on raw inputs (images, WAV, CSV rows, text, a prompt)",
                       description="Run a trained model (a run's .ckpt or a save_pretrained folder) on raw inputs, "
                       "with the preprocessing saved with it: image files, WAV files or sentences -> top-k classes; CSV "
                       "files -> one prediction per row (tabular models); a prompt "
                       "-> generated text (language models); sentences -> translations (seq2seq); nothing -> a "
                       "grid of samples (generative models, --out PNG).")
    s.add_argument("model", help="a checkpoint (.ckpt), a save_pretrained folder, or a Hugging Face Hub id")
    s.add_argument("inputs", nargs="*", help="image files, WAV files, CSV files (tabular models), sentences, or a prompt")
    s.add_argument("--top-k", type=int, default=5, help="classes shown per input (default 5)")
    s.add_argument("--out", help="classifiers/translators: a CSV of the predictions; generative: the PNG grid")
    s.add_argument("--max-new-tokens", type=int, default=200, help="language models: tokens to generate")
    s.add_argument("--temperature", type=float, default=0.8, help="language models: 0 is greedy (default 0.8)")
    s.add_argument("--beam-size", type=int, default=1, help="seq2seq: beam search width (default 1: greedy)")
    s.add_argument("--num", type=int, default=64, help="generative models: samples in the grid (default 64)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    s.set_defaults(fn=cmd_predict)

    s = sub.add_parser("export-run", help="turn a run folder into a save_pretrained folder (safetensors + card)")
    s.add_argument("run_dir", type=Path)
    s.add_argument("out_dir", type=Path)
    s.set_defaults(fn=cmd_export_run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ZooError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `zoo info NAME | head`: the reader left; stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
