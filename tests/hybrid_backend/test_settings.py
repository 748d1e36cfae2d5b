"""Each setting of a hybrid backend reaches the half it is for: the SQL
backend gets the app's SQL settings, the cache's Redis client gets the
cache's own socket timeout (not the redis backend's) with the Redis pool
settings, and the cache, trust and window take theirs."""

from __future__ import annotations

from .conftest import backend_of, settle, store_of


def test_each_setting_reaches_its_half(make_app, hybrid_name):
    app = make_app(
        SMG_HISTORY_CACHE_SOCKET_TIMEOUT=0.125,
        SMG_HISTORY_REDIS_SOCKET_TIMEOUT=4.0,
        SMG_HISTORY_REDIS_POOL_MAX_SIZE=7,
        SMG_HISTORY_REDIS_POOL_TIMEOUT=3.0,
        SMG_HISTORY_POSTGRES_POOL_MAX_SIZE=3,
        SMG_HISTORY_SQL_POOL_TIMEOUT_SECS=2.5,
        SMG_HISTORY_CACHE_RECHECK=0.5,
        SMG_HISTORY_CACHE_WINDOW=9,
    )
    backend = backend_of(app)
    assert backend.sql.name == hybrid_name.removesuffix("+redis")
    assert backend.sql.engine.pool.timeout() == 2.5
    if hybrid_name == "postgres+redis":
        assert backend.sql.engine.pool.size() == 3
    pool = backend.cache.client.connection_pool
    assert (pool.max_connections, pool.timeout) == (7, 3.0)
    assert pool.connection_kwargs["socket_timeout"] == pool.connection_kwargs["socket_connect_timeout"] == 0.125
    assert pool.connection_kwargs["retry"]._retries == 0
    assert backend.trust.recheck == 0.5

    store = store_of(app)
    conv = store.conversations.create(items=[{"role": "user", "content": str(n)} for n in range(20)])
    store.items.recent(conv.id, limit=5)  # a miss fills the window
    settle(app)
    assert [i.position for i in store.items.recent(conv.id, limit=9)] == list(range(11, 20))
    hits = backend.hits
    store.items.recent(conv.id, limit=10)  # one more than the window holds: SQL answers
    assert backend.hits == hits


def test_the_key_prefix_names_every_cache_key(make_app, hybrid_config):
    prefix = hybrid_config["SMG_HISTORY_REDIS_KEY_PREFIX"] + "other:"
    app = make_app(SMG_HISTORY_REDIS_KEY_PREFIX=prefix)
    store = store_of(app)
    conv = store.conversations.create(items=[{"role": "user", "content": "hi"}])
    store.items.recent(conv.id, limit=5)
    settle(app)
    client = backend_of(app).cache.client
    keys = [k.decode() for k in client.scan_iter(match=f"{prefix}*")]
    assert f"{prefix}hc:state" in keys and any(k != f"{prefix}hc:state" for k in keys)
    try:
        assert backend_of(app).cache.state_key == f"{prefix}hc:state"
    finally:
        client.delete(*keys)
