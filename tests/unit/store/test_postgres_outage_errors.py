"""Which driver errors mean "the server is gone" (503 ``store_unavailable``) rather than a statement it refused."""

from __future__ import annotations

import pytest

psycopg = pytest.importorskip("psycopg")
psycopg_pool = pytest.importorskip("psycopg_pool")

from inhouse.store.postgres.database import _gone  # noqa: E402


@pytest.mark.parametrize("exc", [
    psycopg.OperationalError("connection to server on socket failed: No such file or directory"),  # no SQLSTATE
    psycopg.errors.AdminShutdown("terminating connection due to administrator command"),  # 57P01
    psycopg.errors.CannotConnectNow("the database system is starting up"),  # 57P03
    psycopg.errors.ConnectionFailure("connection failure"),  # 08006
    psycopg_pool.PoolTimeout("couldn't get a connection after 1.00 sec"),
])
def test_the_server_going_away_is_gone(exc: Exception) -> None:
    assert _gone(exc)


@pytest.mark.parametrize("exc", [
    psycopg.errors.DiskFull("could not extend file"),  # 53100: StorageFull, handled before
    psycopg.errors.UniqueViolation("duplicate key"),
    psycopg.errors.DeadlockDetected("deadlock detected"),
    psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
    psycopg.DataError("NUL character"),
    ValueError("not a driver error"),
])
def test_a_refused_statement_is_not_gone(exc: Exception) -> None:
    assert not _gone(exc)


@pytest.mark.integration
def test_a_busy_pool_is_an_overload_not_an_outage(postgres_url: str) -> None:
    from inhouse.errors import Overloaded
    from inhouse.store.postgres.database import PostgresDatabase

    db = PostgresDatabase(postgres_url, max_size=1, timeout_s=0.5)
    try:
        with db.connection(), pytest.raises(Overloaded):  # the one connection held: the next caller waits 0.5 s
            db.scalar("SELECT 1")
        assert db._outage_since is None and db.scalar("SELECT 1") == 1  # no outage: later callers wait as usual
    finally:
        db.close()


@pytest.mark.integration
def test_a_warm_pool_serves_at_once_after_the_server_restarts() -> None:
    """A PostgreSQL restart (an upgrade, a failover) leaves every idle connection of a warm pool dead. The pool found
    them one checkout at a time, backing off 0, 1, 2, 4 ... s between them: the first request after the restart
    waited 10 s and got 429 "busy" (seen under a cluster's ingress replica that had not noticed the outage). Now the
    first dead one found has the pool check the rest."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from inhouse.store.postgres.database import CHECK_IDLE_S, PostgresDatabase
    from inhouse.testing.postgres import local_postgres

    with local_postgres() as server:  # its own: it is restarted
        db = PostgresDatabase(server.create_database(), max_size=8)
        try:
            together = threading.Barrier(8)

            def busy(_: int) -> object:
                together.wait(10)  # all eight at once (on a loaded machine the threads may otherwise take turns)
                return db.scalar("SELECT pg_sleep(0.2), 1")

            with ThreadPoolExecutor(8) as workers:  # eight connections open and idle in the pool
                list(workers.map(busy, range(8)))
            deadline = time.monotonic() + 10  # the pool grows from background threads
            while db._pool.get_stats()["pool_available"] < 8 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert db._pool.get_stats()["pool_available"] == 8
            server.stop()
            server.start()
            time.sleep(CHECK_IDLE_S + 0.2)  # idle long enough to be checked at checkout
            started = time.monotonic()
            assert db.scalar("SELECT 1") == 1
            assert time.monotonic() - started < 2.0  # was 10 s, then Overloaded
            assert db.scalar("SELECT 1") == 1 and db._outage_since is None
        finally:
            db.close()


@pytest.mark.integration
def test_the_first_request_of_an_outage_is_told_within_about_a_second() -> None:
    """The server goes away under a warm pool: the first caller asked the pool for its whole timeout (10 s: a
    stream's final record waited that long before it was kept); now the server is asked directly after a second
    without a connection, while the pool is not saturated. Callers after it wait ``OUTAGE_WAIT_S`` as before."""
    import time

    from inhouse.errors import StoreUnavailable
    from inhouse.store.postgres.database import CHECK_IDLE_S, PostgresDatabase
    from inhouse.testing.postgres import local_postgres

    with local_postgres() as server:
        db = PostgresDatabase(server.create_database(), max_size=4)
        try:
            assert db.scalar("SELECT 1") == 1
            server.stop()
            time.sleep(CHECK_IDLE_S + 0.2)
            for _ in range(2):
                started = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    db.scalar("SELECT 1")
                assert time.monotonic() - started < 3.0  # the first was 10 s
            server.start()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    assert db.scalar("SELECT 1") == 1
                    break
                except StoreUnavailable:
                    time.sleep(0.2)
            assert db._outage_since is None
        finally:
            db.close()


@pytest.mark.integration
def test_a_saturated_pool_keeps_its_callers_waiting_their_whole_time(postgres_url: str) -> None:
    """Every connection open and in use: a caller waits in line (here 2.5 s) and gets the one given back at 1.6 s;
    the server is not asked (it is busy, not gone)."""
    import threading

    from inhouse.store.postgres.database import PostgresDatabase

    db = PostgresDatabase(postgres_url, max_size=1, timeout_s=2.5)

    def no_probe() -> bool:
        raise AssertionError("a saturated pool's caller asked the server")

    try:
        db._server_answers = no_probe  # type: ignore[method-assign]
        with db.connection():
            released = threading.Timer(1.6, lambda: None)
            released.start()
            answer: list[int] = []
            waiter = threading.Thread(target=lambda: answer.append(db.scalar("SELECT 1")))
            waiter.start()
            released.join()
        waiter.join(5)
        assert answer == [1] and db._outage_since is None
    finally:
        db.close()
