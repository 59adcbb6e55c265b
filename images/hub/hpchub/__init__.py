"""hpchub: JupyterHub for supercomputing centers.

Modules, by what they do: `config` (the one values loader), `grid` (systems x service
levels), `options` (the one user-options validator), `ssh` (connection pool, CA),
`spawners/` (dispatch, ssh, slurm, spin), `auth/` (authenticators), `console/` (the page).
"""

__version__ = "0.1.0"
