"""``qorgau sites``: where new police booths should go, with the existing booths kept.

Registered into the main parser by :func:`add_sites_command`; registering imports nothing but the
standard library (``qorgau --help`` stays fast), and the command imports the model, the map and
the writers (:mod:`web.site_outputs`, shared with ``POST /api/sites``) when it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["add_sites_command", "cmd_sites"]

_LANGUAGES: tuple[str, ...] = ("kk", "ru", "en")
"""``web.site_outputs.LANGS``."""
_DEFAULT_LANG = "ru"


def add_sites_command(sub: argparse._SubParsersAction) -> None:
    """Add ``sites`` to the ``qorgau`` command's subparsers."""
    p = sub.add_parser(
        "sites",
        help="where new booths should go: walking-distance coverage of risk, existing booths kept",
        description=(
            "Maximal covering location: place --add N new booths so that as much risk as possible is within "
            "--walk-min minutes' walk of a booth, the existing booths kept. Writes sites.html, sites.geojson, "
            "sites.md, sites.csv and summary.json into --out."
        ),
    )
    p.add_argument("--network", type=Path, required=True, metavar="FILE", help="street network .osm/.osm.pbf/.graphml")
    p.add_argument("--existing", type=Path, required=True, metavar="FILE", help="existing booths: Points with 'id'")
    p.add_argument("--add", type=int, required=True, metavar="N", help="new booths to place")
    p.add_argument("--walk-min", type=float, default=10.0, metavar="MIN", help="walking minutes that cover [10]")
    demand = p.add_mutually_exclusive_group(required=True)
    demand.add_argument("--incidents", type=Path, metavar="FILE", help="incidents (.csv, .geojson, .parquet): risk")
    demand.add_argument("--demand", type=Path, metavar="FILE", help="demand Points with a numeric 'weight'")
    p.add_argument(
        "--candidates", type=Path, metavar="FILE", help="candidate Points with 'id' [every ~100 m along streets]"
    )
    p.add_argument(
        "--districts", type=Path, metavar="FILE", help="district Polygons with 'name': coverage per district"
    )
    p.add_argument("--district-floor", type=float, metavar="SHARE", help="least covered share of every district")
    p.add_argument("--hours", metavar="HH:MM-HH:MM", help="only incidents in the booths' staffed hours (local)")
    p.add_argument(
        "--backup-sites", type=Path, metavar="FILE", help="schools, hospitals, SOS buttons: each within two booths"
    )
    p.add_argument("--move", type=int, default=0, metavar="K", help="existing booths that may be moved [0]")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="where the files go")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--lang", choices=_LANGUAGES, default=_DEFAULT_LANG, help=f"language of the files [{_DEFAULT_LANG}]")
    p.add_argument("--time-limit", type=float, default=60.0, metavar="S", help="cap on the MILP solve, seconds [60]")
    p.add_argument("--timezone", default="Asia/Almaty", help="local time of --hours and of the sheet [Asia/Almaty]")
    p.set_defaults(func=cmd_sites)


def cmd_sites(args: argparse.Namespace) -> int:
    """Run the siting; exit 2 with the reason for a bad input."""
    from patrol_planner.siting_types import SitingRequest
    from web.site_inputs import SitingInputError
    from web.site_outputs import make_sites

    request = SitingRequest(
        network=args.network,
        existing=args.existing,
        add=args.add,
        walk_min=args.walk_min,
        incidents=args.incidents,
        demand=args.demand,
        candidates=args.candidates,
        districts=args.districts,
        district_floor=args.district_floor,
        hours=args.hours,
        backup_sites=args.backup_sites,
        move=args.move,
        time_limit_s=args.time_limit,
        timezone=args.timezone,
    )

    def say(text: str) -> None:
        if not args.json:
            print(f"qorgau sites: {text}", file=sys.stderr, flush=True)

    try:
        result, files = make_sites(request, args.out, lang=args.lang, progress=say)
    except SitingInputError as e:
        print(f"qorgau sites: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.summary(), ensure_ascii=False, indent=1))
        return 0
    print(
        f"{len(result.existing)} existing + {len(result.added)} new booths cover {result.covered_share:.1%} of the "
        f"risk within {result.walk_min:g} min walk (existing alone {result.covered_share_existing:.1%}; greedy "
        f"{result.greedy_covered_share:.1%}; gap {result.optimality_gap:.2%}, {result.solver_status}, "
        f"{result.solve_s:.1f} s)"
    )
    print(f"wrote {len(files)} files to {args.out}: " + ", ".join(sorted(files)))
    return 0
