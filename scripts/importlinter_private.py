"""An import-linter contract: no room imports another room's private module.

A module is private when a component of its dotted path below the top-level package starts with one
underscore (``geo._search``, ``patrol_planner._graph``); dunder names (``__init__``, ``__main__``) are
not. Importing a private module is allowed only from inside its own top-level package.

Configured in ``pyproject.toml``::

    [tool.importlinter]
    contract_types = ["private_modules: importlinter_private.PrivateModulesContract"]

    [[tool.importlinter.contracts]]
    name = "No room imports another room's private module"
    type = "private_modules"

``make lint`` puts ``scripts/`` on ``PYTHONPATH`` so that import-linter finds this class.
"""

from __future__ import annotations

from importlinter import Contract, ContractCheck, output


def _is_private(module: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in module.split(".")[1:])


class PrivateModulesContract(Contract):
    type_name = "private_modules"

    def check(self, graph, verbose: bool) -> ContractCheck:
        roots = set(self.session_options["root_packages"]) if "root_packages" in self.session_options else None
        if roots is None:
            roots = {self.session_options["root_package"]}
        broken: list[dict[str, object]] = []
        for importer in sorted(graph.modules):
            top = importer.split(".")[0]
            if top not in roots:
                continue
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                other = imported.split(".")[0]
                if other in roots and other != top and _is_private(imported):
                    details = graph.get_import_details(importer=importer, imported=imported)
                    lines = sorted({d["line_number"] for d in details})
                    broken.append({"importer": importer, "imported": imported, "lines": lines})
        return ContractCheck(kept=not broken, metadata={"broken": broken})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for b in check.metadata["broken"]:
            lines = ", ".join(f"l.{n}" for n in b["lines"])
            output.print_error(f"{b['importer']} imports the private module {b['imported']} ({lines})", bold=False)
            output.new_line()
