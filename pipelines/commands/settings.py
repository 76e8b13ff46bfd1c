"""``seqrep config show``: the resolved configuration, and where each value came from."""

from __future__ import annotations

import argparse

from pipelines.commands.common import config_file, show


def register(sub, common: argparse.ArgumentParser) -> None:
    c = sub.add_parser("config", parents=[common], help="the resolved configuration and where each value came from")
    csub = c.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    s = csub.add_parser("show", parents=[common],
                        help="every setting: defaults < --config file < environment < flags (a method's: its "
                             "YAML < the config's methods.<name> < --set)")
    s.add_argument("--method", help="a method's model and train settings instead")
    s.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="with --method: as `seqrep train --set`")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=show_config)


def show_config(args: argparse.Namespace) -> None:
    from pipelines.core.config import config_sources, load_config

    path = config_file(args)
    if args.method:
        from models.registry import method_sources

        cfg = load_config(path, warehouse=args.warehouse)
        sources, title = method_sources(args.method, cfg.methods.get(args.method), args.sets), f"method {args.method}"
    else:
        sources, title = config_sources(path, warehouse=args.warehouse), f"configuration ({path or 'no file'})"
    rows = [{"setting": key, "value": value, "from": where} for key, (value, where) in sources.items()]
    show(rows, args.json, title)
