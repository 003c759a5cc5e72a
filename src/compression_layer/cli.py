"""The `compression-layer` command: compress text with a trained adapter, or fuse it into one model.

    compression-layer compress "some verbose text"                  # arguments joined by spaces: one text
    compression-layer compress -f notes.md -f todo.txt --stats      # each file is one text
    cat notes.md | compression-layer compress                       # stdin is one text
    compression-layer compress --jsonl in.jsonl --output out.jsonl  # batches: rows with text or verbose
    compression-layer fuse --output models/fused [--de-quantize] [--gguf]

The adapter defaults to the pipeline's current one (models/runs/mlx/latest/adapter, best checkpoint)
and the base model to the one named in its adapter_config.json. Compressed text goes to stdout (or
--output), --stats figures to stderr; errors are one `error:` line and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from compression_layer.compress.adapter import CHECKPOINTS, DEFAULT_ADAPTER
from compression_layer.compress.compressor import DEFAULT_BATCH_SIZE, DEFAULT_MAX_TOKENS, Compression
from compression_layer.compress.errors import CompressError, InputTooLongError
from compression_layer.io import atomic_open, dumps, iter_lines

TEXT_FIELDS = ("text", "verbose")


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {number}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="compression-layer", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    c = commands.add_parser("compress", help="Compress text, files, stdin or a JSONL file.",
                            description="Compress text with a trained adapter (greedy, the training prompt format).")
    c.add_argument("text", nargs="*", help="Text to compress (the arguments joined by spaces are one text).")
    c.add_argument("-f", "--file", action="append", default=[], help="A file to compress as one text ('-' = stdin); repeatable.")
    c.add_argument("--jsonl", help="JSONL input ('-' = stdin): one object per line with a 'text' or 'verbose' "
                                   "field (or a chat record); each output row is the input row plus 'compressed'.")
    c.add_argument("--output", "-o", help="Write the result here instead of stdout.")
    c.add_argument("--stats", action="store_true", help="Token counts (cl100k_base) and ratio: on stderr, or in each JSONL row.")
    c.add_argument("--truncate", action="store_true", help="Cut inputs longer than the adapter's max_seq_length instead of refusing them.")
    c.add_argument("--batch-size", type=_positive, default=DEFAULT_BATCH_SIZE, help="Texts generated together (1 = one at a time).")
    c.add_argument("--max-tokens", type=_positive, default=DEFAULT_MAX_TOKENS, help="Generation cap per text.")
    _model_args(c)
    c.add_argument("--no-adapter", action="store_true", help="Use --model alone (e.g. a folder written by fuse).")

    f = commands.add_parser("fuse", help="Merge the adapter into the base model: a standalone model folder.",
                            description="Write base model + adapter as one folder that mlx_lm.load reads without the adapter.")
    f.add_argument("--output", "-o", required=True, type=Path, help="Model folder to write.")
    f.add_argument("--de-quantize", action="store_true", help="Write float weights (from a quantized base model).")
    f.add_argument("--gguf", action="store_true", help="Also write a GGUF file (mlx-lm: llama, mistral, mixtral only).")
    f.add_argument("--overwrite", action="store_true", help="Replace an output folder written by an earlier fuse.")
    _model_args(f)
    return parser  # fmt: skip


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--adapter", type=Path, default=DEFAULT_ADAPTER, help=f"Adapter folder (default: {DEFAULT_ADAPTER}).")
    p.add_argument("--model", help="Base model folder or hub id (default: the model in adapter_config.json).")
    p.add_argument("--checkpoint", choices=CHECKPOINTS, default="best",
                   help="Adapter weights: best (lowest val loss, else the final file) or last.")  # fmt: skip


# ---- compress ------------------------------------------------------------------------------------


def _read_text(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    try:
        return Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CompressError(f"cannot read {name}: {exc}") from None


def _jsonl_rows(name: str) -> list[tuple[int, dict[str, Any], str]]:
    """(line number, row, text) per non-blank line; a row without usable text is an error naming its line."""
    from compression_layer.data.sanitize import extract  # chat records read as the evaluate stage reads them

    lines = enumerate(sys.stdin.read().splitlines(), 1) if name == "-" else iter_lines(name)
    rows = []
    try:
        for number, line in lines:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CompressError(f"{name}:{number}: not valid JSON ({exc.msg})") from None
            text = next((row[k] for k in TEXT_FIELDS if isinstance(row, dict) and k in row), None)
            if text is None and isinstance(row, dict) and "messages" in row:
                pair = extract(row)  # a chat record: its user text, as the evaluate stage reads it
                text = pair[0] if isinstance(pair, tuple) else None
            if not isinstance(text, str):
                raise CompressError(f"{name}:{number}: expected an object with a string 'text' or 'verbose' field")
            rows.append((number, row, text))
    except (OSError, UnicodeDecodeError) as exc:
        raise CompressError(f"cannot read {name}: {exc}") from None
    return rows


def _stats_line(label: str, c: Compression) -> str:
    notes = (" (input truncated)" if c.truncated else "") + (" (cut at --max-tokens)" if c.finish_reason == "length" else "")
    return f"{label}tokens {c.input_tokens} -> {c.output_tokens}, ratio {c.token_ratio:.3f}{notes}"


def run_compress(args: argparse.Namespace) -> None:
    from compression_layer.compress.compressor import Compressor

    if args.jsonl and (args.text or args.file):
        raise CompressError("give either --jsonl or text/files, not both")
    if args.jsonl:
        rows = _jsonl_rows(args.jsonl)
        labels, texts = [f"{args.jsonl}:{n}" for n, _, _ in rows], [t for _, _, t in rows]
    elif args.file:
        labels, texts = list(args.file), [_read_text(name) for name in args.file]
    elif args.text:
        labels, texts = ["arguments"], [" ".join(args.text)]
    elif sys.stdin.isatty():
        raise CompressError("no input: give TEXT, -f FILE, --jsonl FILE, or pipe text on stdin")
    else:
        labels, texts = ["stdin"], [sys.stdin.read()]

    compressor = Compressor.load(None if args.no_adapter else args.adapter, args.model, args.checkpoint,
                                 max_tokens=args.max_tokens, truncate=args.truncate)  # fmt: skip
    try:
        results = compressor.compress_many(texts, batch_size=args.batch_size, stats=True)
    except InputTooLongError as exc:
        raise CompressError(f"{labels[exc.index]}: {exc}") from None

    if args.jsonl:
        out = [dumps({**row, "compressed": r.text, **(r.stats() if args.stats else {})}) + "\n"
               for (_, row, _), r in zip(rows, results)]  # fmt: skip
    elif len(results) == 1:
        out = [results[0].text + "\n"]
    else:  # several files: each under a header, as `head` prints several files
        out = [f"==> {label} <==\n{r.text}\n" for label, r in zip(labels, results)]
        out = [out[0]] + ["\n" + block for block in out[1:]]
    if args.output and args.output != "-":
        with atomic_open(args.output) as fh:
            fh.writelines(out)
    else:
        sys.stdout.writelines(out)
        sys.stdout.flush()
    if args.stats:
        for label, r in zip(labels, results):
            print(_stats_line(f"{label}: " if len(results) > 1 else "", r), file=sys.stderr)
        if len(results) > 1:
            total_in, total_out = sum(r.input_tokens for r in results), sum(r.output_tokens for r in results)
            ratio = total_out / total_in if total_in else 1.0
            print(f"total: {len(results)} texts, tokens {total_in} -> {total_out}, ratio {ratio:.3f}", file=sys.stderr)


# ---- fuse ----------------------------------------------------------------------------------------


def run_fuse(args: argparse.Namespace) -> None:
    from compression_layer.compress.fuse import fuse

    result = fuse(args.output, args.adapter, args.model, args.checkpoint,
                  de_quantize=args.de_quantize, gguf=args.gguf, overwrite=args.overwrite)  # fmt: skip
    kind = "quantized" if result.quantized else "float"
    print(f"wrote {result.path} ({kind}; {result.base_model} + {result.adapter_weights})")
    if result.gguf:
        print(f"wrote {result.gguf}")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        run_compress(args) if args.command == "compress" else run_fuse(args)
    except CompressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
