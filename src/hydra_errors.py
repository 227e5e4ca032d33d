"""Hydra's and OmegaConf's errors about a command line, as the project's one line (src/cli.py's policy).

Hydra reports a command line it cannot compose in 5 to 12 lines (its message, OmegaConf's, the search
path, a hint about HYDRA_FULL_ERROR). `src.train` asks Hydra to raise them instead (HYDRA_FULL_ERROR=1,
Hydra's documented switch, unless the user set it) and says each here in one line that names the fix.
"""

import dataclasses
import difflib
import re

from hydra.errors import (
    ConfigCompositionException,
    MissingConfigException,
    OverrideParseException,
)
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"
TYPE_NAMES = {"Float": "a number", "Integer": "an integer", "Boolean": "true or false"}


def is_command_line_error(error: BaseException) -> bool:
    """An error of Hydra or OmegaConf about what the command line asked for."""
    from hydra.errors import HydraException

    return isinstance(error, HydraException | OmegaConfBaseException)


def one_line(error: BaseException) -> str:
    """What is wrong with the command line and how to fix it, in one line."""
    cause = error.__cause__
    message = str(error)
    if isinstance(error, MissingConfigException):
        return missing_option(error)
    if isinstance(error, OverrideParseException):
        return unreadable_override(message)
    if isinstance(error, ConfigCompositionException):
        unknown = re.match(r"Could not override '([^']+)'", message)
        if unknown and isinstance(cause, ConfigKeyError | ConfigAttributeError):
            return unknown_key(unknown.group(1), cause)
        merging = re.match(r"Error merging override (.*)", message)
        if merging and isinstance(cause, ValidationError):
            return bad_value(merging.group(1), cause)
        ambiguous = re.match(r"Ambiguous value for argument '([^=']+)=(.*)'", message)
        if ambiguous:
            key, value = ambiguous.groups()
            return (
                f"{key}={value} has a comma: add -m to sweep over its values; for one value, quote it for "
                f"Hydra (\"{key}='{value}'\" in the shell), or write a list as {key}=[...]"
            )
    lines = [first_line(message)] + ([first_line(str(cause))] if cause is not None else [])
    return ": ".join(line for line in lines if line)


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def missing_option(error: MissingConfigException) -> str:
    missing, options = error.missing_cfg_file or "", list(error.options or [])
    if "/" not in missing or not options:
        return first_line(str(error))
    group, name = missing.rsplit("/", 1)
    guess = difflib.get_close_matches(name, options, n=1)
    hint = f"; did you mean {group}={guess[0]}?" if guess else ""
    return f"{group}={name} is not an option{hint} (options: {', '.join(options)})"


def unknown_key(key: str, cause: ConfigKeyError | ConfigAttributeError) -> str:
    parent, _, name = key.rpartition(".")
    schema = getattr(cause, "object_type", None)
    fields = dataclasses.fields(schema) if dataclasses.is_dataclass(schema) else ()
    known = [field.name for field in fields if not field.name.startswith("_")]
    guess = difflib.get_close_matches(name, known, n=1)
    prefix = f"{parent}." if parent else ""
    if guess:
        hint = f"did you mean {prefix}{guess[0]}?"
    elif known:
        hint = f"{parent or 'the config'} has: {', '.join(known)}"
    else:
        hint = f"{parent or 'the config'} has no such setting"
    return f"{key} is not a setting; {hint}"


def bad_value(override: str, cause: ValidationError) -> str:
    written_key, _, value = override.partition("=")
    key = str(getattr(cause, "full_key", "") or written_key)
    reason = first_line(str(cause))
    wanted = re.search(r"could not be converted to (\w+)", reason)
    if wanted and wanted.group(1) in TYPE_NAMES:
        named = re.match(r"Value '(.*)' of type", reason)
        if key != written_key.lstrip("+~") and named:  # an element of a list or dict: OmegaConf names it
            return f"{key} takes {TYPE_NAMES[wanted.group(1)]}, not {named.group(1)!r} ({override})"
        return f"{key} takes {TYPE_NAMES[wanted.group(1)]}, not {value!r}"
    choices = re.match(r"Invalid value '([^']*)', expected one of \[(.*)\]", reason)
    if choices:
        return f"{key}={choices.group(1)} is not a choice; choose one of {choices.group(2)}"
    return f"{override}: {reason}"


def unreadable_override(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    # Hydra 1.4 puts a line of its own before the one that names the override
    at = next((i for i, line in enumerate(lines) if line.startswith("Error parsing override '")), 0)
    text = re.match(r"Error parsing override '(.*)'", lines[at]) if lines else None
    override = text.group(1) if text else "?"
    why = lines[at + 1] if len(lines) > at + 1 else ""
    if "=" not in override:  # a word of its own: what was meant to be one value was split by the shell
        return (
            f"'{override}' is not an override (key=value): a value with spaces must be quoted, e.g. "
            f"\"dataset.root='/my data'\" ({GRAMMAR})"
        )
    return (
        f"Hydra cannot read the override '{override}' ({why}); quote values with spaces, commas or "
        f"brackets for Hydra, e.g. \"key='a, b'\" ({GRAMMAR})"
    )
