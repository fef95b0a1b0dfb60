"""The publish API driven the way a Python backend would, with `requests`, against two
example servers (the release binary, STREAMPOD_EXAMPLE_SERVER) joined into one cluster by
a private Redis this test starts on a free port: posts reach a subscriber on the other
server, an idempotent retry on the other server delivers nothing twice, history and
presence read back, and every refusal is JSON with the documented status.

Run by tests/run-all.sh; by hand:
    PYTHONPATH=target/python-deps STREAMPOD_EXAMPLE_SERVER=target/release/example-server \
        python3 tests/python/publish_api_test.py
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
import uuid

import requests
import websocket

API_KEY = "publish-api-test-key"
ROOM = "python"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port, deadline=10.0):
    start = time.monotonic()
    while time.monotonic() - start < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Cluster:
    """A private redis-server and two example servers joined through it."""

    def __init__(self):
        self.processes = []
        self.scratch = tempfile.mkdtemp(prefix="streampod-python-")
        redis_port = free_port()
        self.start(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no", "--dir", self.scratch])
        wait_for_port(redis_port)
        binary = os.environ["STREAMPOD_EXAMPLE_SERVER"]
        prefix = f"python-{uuid.uuid4().hex[:8]}"
        self.nodes = []
        for _ in range(2):
            server = self.start([binary, "--bind", "127.0.0.1:0", "--api-key", API_KEY,
                                 "--redis", f"redis://127.0.0.1:{redis_port}/",
                                 "--redis-prefix", prefix, "--database-url", "none",
                                 "--room-history", "100", "--log", "warn"],
                                stdout=subprocess.PIPE)
            line = server.stdout.readline().decode()
            assert line.startswith("listening on "), line
            self.nodes.append("http://" + line.split()[-1])
        for node in self.nodes:
            self.wait_connected(node)

    def start(self, command, stdout=subprocess.DEVNULL):
        process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.DEVNULL)
        self.processes.append(process)
        return process

    @staticmethod
    def wait_connected(node):
        start = time.monotonic()
        while time.monotonic() - start < 10:
            health = requests.get(node + "/health", timeout=5).json()
            if health.get("cluster") == "connected":
                return
            time.sleep(0.05)
        raise RuntimeError(f"{node} did not connect to Redis: {health}")

    def stop(self):
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(self.scratch, ignore_errors=True)


def api(node, operation, body, key=API_KEY, headers=None):
    sent = {"Authorization": f"Bearer {key}"} if key else {}
    sent.update(headers or {})
    return requests.post(f"{node}/api/{operation}", json=body, headers=sent, timeout=10)


def chat(content):
    return {"className": "ChatMessage",
            "data": {"senderName": "billing", "content": content, "channelId": ROOM}}


class Subscriber:
    """A streaming-method call of chat.messages on a room, over /v1/websocket."""

    def __init__(self, node):
        self.socket = websocket.create_connection(node.replace("http", "ws", 1) + "/v1/websocket",
                                                  timeout=5)
        self.socket.send(json.dumps({"type": "omsc", "data": {
            "en": "chat", "m": "messages", "cid": str(uuid.uuid4()),
            "args": json.dumps({"channelId": ROOM}), "is": []}}))
        opened = json.loads(self.socket.recv())
        assert opened["type"] == "omsr" and opened["data"]["res"] == "success", opened

    def contents(self, quiet=0.5):
        """Every message's content until nothing comes for `quiet` seconds."""
        got = []
        self.socket.settimeout(quiet)
        while True:
            try:
                frame = json.loads(self.socket.recv())
            except websocket.WebSocketTimeoutException:
                return got
            if frame["type"] == "msm":
                got.append(frame["data"]["o"]["data"]["content"])

    def close(self):
        self.socket.close()


class PublishApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster()
        cls.a, cls.b = cls.cluster.nodes

    @classmethod
    def tearDownClass(cls):
        cls.cluster.stop()

    def test_the_openapi_description_is_served_and_its_examples_are_accepted(self):
        description = requests.get(self.a + "/api/openapi.json", timeout=5).json()
        self.assertTrue(description["openapi"].startswith("3."))
        for operation in ["publish", "broadcast", "history", "presence"]:
            post = description["paths"][f"/api/{operation}"]["post"]
            example = post["requestBody"]["content"]["application/json"]["example"]
            answer = api(self.a, operation, example)
            self.assertEqual(answer.status_code, 200, (operation, answer.text))

    def test_a_global_publish_reaches_the_other_server_and_an_idempotent_retry_there_delivers_nothing(self):
        subscriber = Subscriber(self.b)
        try:
            key = f"invoice-{uuid.uuid4()}"
            body = {"channel": f"chat-room-{ROOM}", "message": chat("paid"), "reach": "global"}
            first = api(self.a, "publish", body, headers={"Idempotency-Key": key})
            self.assertEqual(first.status_code, 200, first.text)
            # Servers with a listener on the channel: b only.
            self.assertEqual(first.json(), {"reach": "global", "servers": 1})
            self.assertEqual(subscriber.contents(), ["paid"])
            # The caller timed out and retries, through the load balancer, on the other server.
            retry = api(self.b, "publish", body, headers={"Idempotency-Key": key})
            self.assertEqual(retry.status_code, 200, retry.text)
            self.assertEqual(retry.json(), first.json())
            self.assertEqual(retry.headers.get("Idempotent-Replayed"), "true")
            self.assertEqual(subscriber.contents(), [], "delivered once")
            # Without the key, a repeat is a new post.
            self.assertEqual(api(self.b, "publish", body).status_code, 200)
            self.assertEqual(subscriber.contents(), ["paid"])
        finally:
            subscriber.close()

    def test_a_local_publish_reports_its_delivery_and_history_and_presence_read_back(self):
        # (In a cluster, history and presence are the cluster's: read on the other server.)
        subscriber = Subscriber(self.b)
        try:
            channel = f"chat-room-{ROOM}"
            answer = api(self.b, "publish", {"channel": channel, "message": chat("local")})
            self.assertEqual(answer.status_code, 200, answer.text)
            self.assertEqual(answer.json(), {"reach": "local", "delivered": 1, "dropped": 0,
                                             "disconnected": 0})
            self.assertEqual(subscriber.contents(), ["local"])
            # In a cluster the history keeps what is posted to every server.
            kept = {"channel": channel, "message": chat("kept"), "reach": "global"}
            self.assertEqual(api(self.b, "publish", kept).status_code, 200)
            self.assertEqual(subscriber.contents(), ["kept"])
            presence = api(self.a, "presence", {"channel": channel}).json()
            self.assertGreaterEqual(presence["count"], 1, presence)
            self.assertEqual(len(presence["members"]), presence["count"])
            history = api(self.a, "history", {"channel": channel}).json()
            contents = [entry["message"]["data"]["content"] for entry in history["messages"]]
            self.assertIn("kept", contents, history)
            self.assertTrue(history["complete"], history)
            offsets = [entry["offset"] for entry in history["messages"]]
            self.assertEqual(offsets, sorted(offsets))
            # Paging on from an offset gives what came after it, and nothing twice.
            since = {"epoch": history["epoch"], "offset": offsets[0]}
            rest = api(self.a, "history", {"channel": channel, "since": since}).json()
            self.assertEqual([entry["offset"] for entry in rest["messages"]], offsets[1:])
        finally:
            subscriber.close()

    def test_a_broadcast_to_a_user_is_taken_by_every_server(self):
        body = {"endpoint": "notification", "user": "1", "reach": "global",
                "message": {"className": "UserNotification",
                            "data": {"userId": 1, "title": "hi", "body": "there"}}}
        answer = api(self.a, "broadcast", body)
        self.assertEqual(answer.status_code, 200, answer.text)
        # Every server subscribes to the cluster's broadcasts.
        self.assertEqual(answer.json(), {"reach": "global", "servers": 2})

    def test_refusals_are_json_with_the_documented_status(self):
        channel = f"chat-room-{ROOM}"
        for body, status, code in [
            ({"channel": channel, "message": {"className": "Nope", "data": {}}}, 400,
             "invalid_message"),
            ({"channel": channel}, 400, "bad_request"),
            ({"channel": "", "message": chat("x")}, 400, "bad_request"),
            ({"channel": channel, "message": chat("x"), "extra": 1}, 400, "bad_request"),
        ]:
            answer = api(self.a, "publish", body)
            self.assertEqual((answer.status_code, answer.json()["error"]["code"]), (status, code),
                             answer.text)
        answer = api(self.a, "history", {"channel": "not-kept"})
        self.assertEqual((answer.status_code, answer.json()["error"]["code"]),
                         (404, "no_history"))
        answer = api(self.a, "presence", {"channel": "not-kept"})
        self.assertEqual((answer.status_code, answer.json()["error"]["code"]),
                         (404, "no_presence"))
        huge = {"channel": channel, "message": chat("x" * (2 << 20))}
        answer = api(self.a, "publish", huge)
        self.assertEqual((answer.status_code, answer.json()["error"]["code"]),
                         (413, "payload_too_large"))
        answer = requests.get(self.a + "/api/publish", timeout=5)
        self.assertEqual(answer.status_code, 405)

    # Named to run last (unittest runs tests by name): once throttled, node b refuses
    # every key from this address for a while, the right one too.
    def test_without_the_key_nothing_is_posted_and_guessing_is_throttled(self):
        body = {"channel": f"chat-room-{ROOM}", "message": chat("forged")}
        for key in [None, "wrong"]:
            answer = api(self.b, "publish", body, key=key)
            self.assertEqual(answer.status_code, 401, answer.text)
            self.assertEqual(answer.json()["error"]["code"], "unauthenticated")
        statuses = [api(self.b, "publish", body, key=f"guess-{n}").status_code for n in range(30)]
        self.assertIn(429, statuses)
        throttled = api(self.b, "publish", body, key="another-guess")
        self.assertEqual(throttled.status_code, 429)
        self.assertTrue(throttled.headers.get("Retry-After"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
