import asyncio, pytest, logging
from tests.integration.helpers import new_user
from client._daemon import Daemon, DaemonConfig
pytestmark = pytest.mark.cluster
async def test_dbg(cluster, tmp_path):
    logging.getLogger("watchdog").setLevel(logging.WARNING)
    _, token = await new_user(cluster.meta_address, cluster.admin_token)
    (tmp_path/"f").mkdir()
    (tmp_path/"f"/"x.txt").write_text("hi")
    d = Daemon(DaemonConfig(folder=tmp_path/"f", state_dir=tmp_path/"s", endpoint=cluster.meta_address, token=token, settle=0.1))
    t = asyncio.create_task(d.run())
    for i in range(10):
        await asyncio.sleep(0.5)
        print(i, d.status(), t.done())
    if t.done(): print(t.exception())
    d.stop(); await t
