# The hub's whole configuration comes from the chart's values through hpchub's loader.
from hpchub.config import apply

apply(c)  # noqa: F821 - `c` is injected by JupyterHub
