"""argparse as every entry point here uses it: one-line errors, a guess for a mistyped option,
--debug, and help that shows each default once."""

import argparse
import difflib
import re

from utils.errors import UserError

_UNKNOWN = re.compile(r"unrecognized arguments: (.*)")


class Parser(argparse.ArgumentParser):
    """Errors are a UserError (one line on stderr, exit 2) instead of usage + message; an
    unknown option gets the closest known one suggested."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.add_argument(  # read by utils.errors.run_cli
            "--debug",
            action=argparse.BooleanOptionalAction,
            default=False,
            help="show tracebacks of errors instead of one line",
        )

    def typed(self, argv=None) -> dict:
        """The options typed on the command line alone, by their dest. Parsed once as they are
        (--help shows the defaults, errors answer), then with every default a marker that only
        a typed option replaces."""
        parsed = vars(self.parse_args(argv))
        defaults = {dest: self.get_default(dest) for dest in parsed}
        unset = object()
        self.set_defaults(**dict.fromkeys(parsed, unset))
        try:
            typed = vars(self.parse_args(argv))
        finally:
            self.set_defaults(**defaults)
        return {k: v for k, v in typed.items() if v is not unset}

    def error(self, message):
        hint = ""
        unknown = _UNKNOWN.search(message)
        if unknown:
            known = re.findall(r"--[\w-]+", self.format_usage())  # every option, by its first name
            for word in unknown.group(1).split():
                close = difflib.get_close_matches(word.split("=")[0], known, n=1, cutoff=0.6)
                if word.startswith("--") and close:
                    hint = f"; did you mean {close[0]}?"
                    break
        raise UserError(f"{message}{hint} (see {self.prog} --help)")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show a default once: not for None or required options, nor where the help says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None or action.required or "default" in text:
            return text
        if action.default is False:  # a switch that is off unless given
            return text
        return super()._get_help_string(action)
