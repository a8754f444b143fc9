"""``onnxnoise data list|add|get|remove``: datasets by name (see :mod:`onnxnoise.data.registry`)."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from onnxnoise.cli.output import json_text
from onnxnoise.data.download import CATALOGUE, MIRROR_ENV, datasets_dir, get_dataset
from onnxnoise.data.registry import load_registry, register_dataset, registry_path, unregister_dataset
from onnxnoise.report.terminal import TerminalTable

__all__ = ["add_data_parser", "cmd_data"]

_EXIT_INTERRUPTED = 130


def add_data_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``data`` subcommand and its actions to ``sub``."""
    data = sub.add_parser("data", help="datasets by name: list, add a folder, download CIFAR-10/100 or Imagenette",
                          description="A registry of datasets by name in the user's config folder "
                          "($ONNXNOISE_CONFIG_DIR, else the platform's, e.g. ~/.config/onnxnoise). bench and sweep "
                          "without --data use the registered dataset whose class count matches the model's outputs; "
                          "--data NAME uses a registered name.")
    actions = data.add_subparsers(dest="data_action", required=True, parser_class=type(data))
    listing = actions.add_parser("list", help="registered datasets and the ones `get` can download")
    listing.add_argument("--json", action="store_true", help="print the list as JSON")
    add = actions.add_parser("add", help="register an existing dataset folder (or .npz) under a name")
    add.add_argument("name", help="name, e.g. imagenet, cifar10")
    add.add_argument("path", help="dataset folder or .npz, as --data takes it")
    add.add_argument("--replace", action="store_true", help="replace an entry of that name that points elsewhere")
    get = actions.add_parser("get", help=f"download, verify (sha256), extract and register: {', '.join(CATALOGUE)}")
    get.add_argument("name", help=", ".join(CATALOGUE))
    get.add_argument("--force", action="store_true", help="download again even when already there")
    get.add_argument("--mirror", metavar="URL", help=f"base URL serving the same archive file names "
                     f"(default ${MIRROR_ENV}, else the official URL)")
    remove = actions.add_parser("remove", help="forget a registered name (its files stay)")
    remove.add_argument("name")


def cmd_data(args: argparse.Namespace, console: Console) -> int:
    """Run one ``data`` action; returns the exit code."""
    action = args.data_action
    if action == "list":
        return _list(args, console)
    if action == "add":
        entry = register_dataset(args.name, args.path, replace=args.replace, on_skipped=lambda line: console.print(
            f"[bold red]WARNING:[/] {escape(line)}", highlight=False))
        console.print(f"registered `{entry.name}`: {entry.path} ({entry.format}, {entry.num_classes} classes, "
                      f"{entry.images:,} images)", highlight=False, markup=False, soft_wrap=True)  # paths unbroken
        return 0
    if action == "remove":
        entry = unregister_dataset(args.name)
        console.print(f"removed `{entry.name}` from the registry; its files in {entry.path} are untouched",
                      highlight=False, markup=False, soft_wrap=True)
        return 0
    return _get(args, console)


def _get(args: argparse.Namespace, console: Console) -> int:
    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TimeRemainingColumn(), console=console, transient=True)
    task = bar.add_task(f"downloading {args.name}", total=None)

    def progress(done: int, total: int | None) -> None:
        bar.update(task, completed=done, total=total)

    try:
        with bar:
            entry, downloaded = get_dataset(args.name, force=args.force, base_url=args.mirror, progress=progress)
    except KeyboardInterrupt:
        print(f"onnxnoise: interrupted; the partial download is kept in {datasets_dir()}: run `onnxnoise data get "
              f"{args.name}` again to resume", file=sys.stderr)
        return _EXIT_INTERRUPTED
    verb = "downloaded, verified and registered" if downloaded else "already there; registered"
    console.print(f"{verb} `{entry.name}`: {entry.path} ({entry.num_classes} classes, {entry.images:,} images)",
                  highlight=False, markup=False)
    return 0


def _list(args: argparse.Namespace, console: Console) -> int:
    entries = load_registry()
    downloadable = {n: a for n, a in CATALOGUE.items() if n not in entries}
    if args.json:
        print(json_text({
            "registry": str(registry_path()),
            "datasets": [e.to_dict() for _, e in sorted(entries.items())],
            "downloadable": [{"name": a.name, "url": a.url, "sha256": a.sha256, "size": a.size,
                              "description": a.description} for a in CATALOGUE.values()],
        }, indent=2))
        return 0
    if entries:
        table = TerminalTable(title=f"registered datasets ({registry_path()})", lead=1, fold=("path",))
        for column in ("name", "path", "classes", "images", "source"):
            table.add_column(column, justify="right" if column in ("classes", "images") else "left",
                             overflow="fold")
        for name, e in sorted(entries.items()):
            missing = e.to_dict()["exists"] is False
            table.add_row(name, e.path + (" (missing)" if missing else ""), str(e.num_classes), f"{e.images:,}",
                          e.source)
        console.print(table)
    else:
        console.print(f"no datasets registered yet ({registry_path()}); register a folder with `onnxnoise data add "
                      "imagenet /path/to/val`", highlight=False, markup=False)
    for name, archive in downloadable.items():
        console.print(f"  `onnxnoise data get {name}`: {archive.description}", highlight=False, markup=False)
    return 0
