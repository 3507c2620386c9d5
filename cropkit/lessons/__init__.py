"""What the lessons need beyond the library: the headless harness (papermill with a watchdog), the lessons' pages
and summary, the jupytext pairs, and the widgets. Nothing here decides what a run computes."""
