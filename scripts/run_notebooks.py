"""Executes every notebook of a folder with nbclient, in memory (the files stay without
outputs), against the lake in JOBS_LAKE (default: ../lake from the notebooks' folder).
Fails if a notebook was committed with outputs or if a cell fails.

Usage: run_notebooks.py [NOTEBOOK_DIR]
"""
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def main():
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "notebooks")
    books = sorted(folder.glob("*.ipynb"))
    if not books:
        sys.exit(f"no notebooks in {folder}")
    failed = 0
    for path in books:
        nb = nbformat.read(path, as_version=4)
        stored = [c for c in nb.cells if c.cell_type == "code" and (c.outputs or c.execution_count)]
        if stored:
            print(f"FAIL {path}: stored with outputs (clear them before committing)")
            failed += 1
            continue
        start = time.time()
        try:
            NotebookClient(nb, timeout=600, kernel_name="python3",
                           resources={"metadata": {"path": str(folder)}}).execute()
        except CellExecutionError as e:
            print(f"FAIL {path}:\n{e}")
            failed += 1
            continue
        cells = sum(1 for c in nb.cells if c.cell_type == "code")
        images = sum(1 for c in nb.cells if c.cell_type == "code"
                     for o in c.outputs if "image/png" in o.get("data", {}))
        print(f"ok   {path}: {cells} cells, {images} charts, {time.time() - start:.1f} s")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
