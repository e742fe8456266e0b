"""Run the slowest test scopes first.

`make test` spreads whole modules and notebooks over the cores (`pytest -n auto --dist loadscope
--no-loadscope-reorder`), in the order they were collected. Started last, a long notebook keeps one worker
busy while the others wait; started first, the short modules fill in around it. The list is what
`--durations` shows as slowest: notebook 03's strategies, the browser test (it runs notebook 04 in
JupyterLab), the notebooks that play whole conversations. The order inside each notebook or module is kept.
"""

SLOWEST_FIRST = (
    "notebooks/03_bounding_history.ipynb",
    "tests/test_browser.py",
    "notebooks/04_summarize_and_continue.ipynb",
    "notebooks/02_amnesia.ipynb",
    "notebooks/07_frameworks_and_provider_state.ipynb",
    "notebooks/01_stateless_loop.ipynb",
    "tests/test_benchmark_strategies.py",
    "notebooks/solutions/04_solutions.ipynb",
    "notebooks/06_memory_security.ipynb",
)


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return SLOWEST_FIRST.index(path) if path in SLOWEST_FIRST else len(SLOWEST_FIRST)

    items.sort(key=rank)  # stable: each scope's own order is kept
