"""The first thing that must work: a login and a query through the proxy."""


def test_select_through_proxy(proxy, cluster):
    conn = proxy.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT 1, @@port")
        one, port = cur.fetchone()
    conn.close()
    assert one == 1
    assert port == cluster.primary.port  # default_hostgroup 0 = the primary
    st = proxy.wait_idle()
    assert st.client_connections_connected == 0
    assert st.backend_connections_in_use == 0
    assert st.backend_connections_connected == st.backend_connections_idle
    assert st.tasks == 0
