"""Command-line flags from the declared settings (:mod:`onnxnoise.settings`), and back.

:func:`add_settings` adds every setting a command takes to its parser, in its ``--help``
section; :func:`given_options` reads them back from the parsed arguments as the
``key -> value`` options the config builders take; :func:`flag_words` (defined in
:mod:`onnxnoise.run_setup`, which the check layer's re-check command uses too) writes one back as
command-line words. Every flag defaults to ``None`` (not given): the config dataclasses own the defaults.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

from onnxnoise.errors import ConfigError
from onnxnoise.run_setup import flag_words
from onnxnoise.run_setup import option_settings as command_settings
from onnxnoise.settings import GROUPS, Setting

__all__ = ["add_settings", "command_settings", "given_options", "flag_words"]


def _type(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """``convert`` for argparse: its ConfigError message becomes argparse's (``argument --mean: expected ...``)."""
    if isinstance(convert, type):
        return convert  # int, float, Path: argparse names them in its own message ("invalid int value: 'x'")

    @functools.wraps(convert)
    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def _arguments(setting: Setting, command: str) -> dict[str, Any]:
    """``add_argument`` keywords of one setting in ``command``."""
    shown = not setting.hidden_in(command)
    kwargs: dict[str, Any] = {"dest": setting.key, "default": None,
                              "help": setting.text().replace("%", "%%") if shown else argparse.SUPPRESS}
    if setting.action is not None:
        kwargs["action"] = setting.action
    if setting.action in (None, "append"):
        for name in ("metavar", "choices"):
            if getattr(setting, name) is not None:
                kwargs[name] = list(getattr(setting, name)) if name == "choices" else getattr(setting, name)
        if setting.type is not None:
            kwargs["type"] = _type(setting.type)
    if setting.required:
        kwargs["required"] = True
    return kwargs


def add_settings(parser: argparse.ArgumentParser, command: str, *classes: type) -> dict[str, Any]:
    """Add the flags of every setting of ``classes`` that ``command`` takes.

    Returns:
        The ``--help`` sections by title (:data:`onnxnoise.settings.GROUPS`, created in that
        order; argparse shows only those with options), for the command's own options.
    """
    groups = {title: parser.add_argument_group(title) for title in GROUPS}
    for setting in command_settings(command, *classes):
        where = parser if setting.group is None else groups[setting.group]
        where.add_argument(setting.flag, **_arguments(setting, command))
    return groups


def given_options(args: argparse.Namespace, command: str, *classes: type) -> dict[str, Any]:
    """The options ``command`` took for ``classes``, ``key -> value`` as parsed (``None``: not given)."""
    return {s.key: getattr(args, s.key, None) for s in command_settings(command, *classes)}
