"""``tensorfab jobs``: a job queue and GPU scheduler (policy, simulator; daemon and backends).

The policy (:mod:`tensorfab.jobs.policy`) is a pure function the daemon and the simulator
(:mod:`tensorfab.jobs.simulate`) both call; :mod:`tensorfab.jobs.trace` writes synthetic
traces shaped like Microsoft's Philly cluster.
"""
