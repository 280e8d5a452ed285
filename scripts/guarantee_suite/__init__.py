"""The guarantees suite: try to break each promise of the contract and count what was lost.

    bash scripts/guarantees            the full run (a few minutes)
    bash scripts/guarantees --short    the CI-sized run (under a minute)

Sections, one module each:

    linearizable   histories of concurrent operations from Python, Node and Ruby steps at once
                   (increment, compareAndSwap, push/pop/shift/unshift, transactions) on the memory,
                   file and Redis adapters (two runtimes sharing the file store or Redis), checked
                   by ``linearizability.check_history``
    crash          SIGKILLs of several processes writing to one file store, per fsync mode:
                   acknowledged writes lost
    redis          redis-server (appendfsync always) killed and restarted under writers:
                   acknowledged writes lost, time to UNAVAILABLE, time to recover
    fuzz           one bit flipped in every byte of a small file store: every acknowledged
                   record reads back, or opening it reports CorruptStoreError

The run prints one table row per thing tried and exits 1 when anything was
lost (or a section could not decide). ``report`` holds the table;
``servers`` the throwaway redis-server; ``steps/`` the step files the
workers run. ``python -m scripts.guarantee_suite.fuzz`` prints where the
bit flips landed, part by part of the log.
"""
