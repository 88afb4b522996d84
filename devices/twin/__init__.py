"""The SUMO digital twin of the Jl. Sunset Road corridor (see ``docs/twin.md``).

* :mod:`devices.twin.network` derives the corridor (nodes, edges, lanes, connections) from the
  fleet and the plans; :mod:`devices.twin.demand` the morning-peak demand from the counts;
  :mod:`devices.twin.build` writes both, runs netconvert and writes ``data/`` (the committed twin);
* :mod:`devices.twin.links` is the validated mapping from lalin's ids (signal groups, detectors,
  cameras) to SUMO's (link indices, E1 and E2 detectors, lanes);
* :mod:`devices.twin.aspects` translates signal-group aspects into SUMO state strings (pure);
* :mod:`devices.twin.world` runs the simulation in-process (libsumo); :mod:`devices.twin.process`
  runs it in a child process behind an async API, and the fixed-time baseline.
"""

from pathlib import Path

#: Where the committed twin lives (net, routes, detectors, config, signal_links.yaml).
DATA_DIR = Path(__file__).parent / "data"
