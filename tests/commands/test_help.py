"""Every management command answers `--help` (exit 0) with what it does and every argument it takes.

Commands are discovered, so one added later is held to the same rule.
"""

from __future__ import annotations

import os
import pkgutil
import re
import subprocess
import sys

import pytest
from django.core.management import load_command_class
from django.core.management.base import BaseCommand

import connections.management.commands as commands_package
from tests.support.workers import ROOT

COMMANDS = sorted(m.name for m in pkgutil.iter_modules(commands_package.__path__) if not m.name.startswith("_"))


def squeezed(text: str) -> str:
    # argparse wraps lines (at spaces and hyphens); compare without any whitespace.
    return re.sub(r"\s+", "", text)


def own_arguments(name: str) -> list:
    """The command's own argparse actions, without Django's common options (--verbosity, --settings, ...)."""
    common = {a.dest for a in BaseCommand().create_parser("manage.py", "base")._actions}
    parser = load_command_class("connections", name).create_parser("manage.py", name)
    return [(parser, a) for a in parser._actions if a.dest not in common]


def test_the_expected_commands_are_all_checked():
    expected = {
        "cio_standin",
        "create_inbound_token",
        "import_memberships",
        "load_demo",
        "prune_deliveries",
        "resync",
        "rotate_encryption_key",
        "verify_credentials",
    }
    assert expected <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_exits_0_and_describes_the_command_and_each_argument(name):
    result = subprocess.run(
        [sys.executable, "manage.py", name, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: manage.py {name}")
    output = squeezed(result.stdout)
    description = load_command_class("connections", name).help
    assert description.strip(), f"{name} has no description"
    assert squeezed(description.split("\n\n")[0]) in output
    for parser, action in own_arguments(name):
        label = action.option_strings[0] if action.option_strings else action.dest
        assert action.help, f"{name}: {label} has no help text"
        assert squeezed(label) in output or squeezed(action.metavar or "") in output, f"{name}: {label} not shown"
        expanded = parser._get_formatter()._expand_help(action)
        assert squeezed(expanded) in output, f"{name}: the help of {label} is not shown"
