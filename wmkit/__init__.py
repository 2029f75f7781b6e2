"""wmkit: world models from video and actions.

Shape vocabulary used throughout: ``B`` batch, ``T`` time / horizon, ``N`` tokens per frame,
``D`` embedding, ``A`` action dim, ``S`` planner samples, ``K`` elites, ``C H W`` image.

Importing ``wmkit`` is cheap: torch, h5py and the simulators load on first use.
"""

__version__ = "0.1.0"
