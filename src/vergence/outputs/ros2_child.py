"""The `[ros2]` node's process: run by the Python that has ROS 2 (`[ros2] python`: on a robot the system's, with ROS
sourced; in the tests a venv of ROS wheels), never by vergence's own, so rclpy and its libraries stay out of the server.

Standalone: it imports nothing of vergence. argv[1] is its configuration (JSON): `node`, `namespace`, `command_topic`
(empty: none), and `streams`, each `{"topic": "cam0"}` (published as `<topic>/image/compressed` and
`<topic>/camera_info`). Its stdin carries records `>BHIQ` (kind, stream index, payload length, capture time ns) and the
payload: kind 1 a JPEG, published as sensor_msgs/CompressedImage with the capture time as its header stamp, together
with a sensor_msgs/CameraInfo of the same stamp; kind 2 the stream's camera info as JSON (width, height,
distortion_model, d, k, r, p), kept for the next pictures. It writes lines: `ready`; `watch <index> <0|1>` when a
stream gains its first subscriber or loses its last (vergence encodes only while someone watches); `command <json>`
for each std_msgs/String received on the command topic; `error <message>` before it exits on a failure.
"""

from __future__ import annotations

import json
import struct
import sys
import threading

HEADER = struct.Struct(">BHIQ")
KIND_IMAGE, KIND_INFO = 1, 2
WATCH_INTERVAL_S = 0.2


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> int:
    config = json.loads(sys.argv[1])
    try:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import CameraInfo, CompressedImage
        from std_msgs.msg import String
    except ImportError as err:
        say(f"error cannot import rclpy or the ROS messages (sensor_msgs, std_msgs): {err}")
        return 2
    rclpy.init(args=[])
    node = rclpy.create_node(config["node"], namespace=config.get("namespace") or "")
    streams = config["streams"]
    images = [node.create_publisher(CompressedImage, f"{s['topic']}/image/compressed", 10) for s in streams]
    infos = [node.create_publisher(CameraInfo, f"{s['topic']}/camera_info", 10) for s in streams]
    frame_ids = [s.get("frame_id", s["topic"].strip("/").replace("/", "_")) for s in streams]
    camera_infos: list[dict] = [{} for _ in streams]
    lock = threading.Lock()

    if config.get("command_topic"):

        def on_command(message: String) -> None:
            say("command " + json.dumps(message.data))

        node.create_subscription(String, config["command_topic"], on_command, 10)

    watched = [False] * len(streams)

    def watch() -> None:
        for index, publisher in enumerate(images):
            now = publisher.get_subscription_count() > 0 or infos[index].get_subscription_count() > 0
            if now != watched[index]:
                watched[index] = now
                say(f"watch {index} {int(now)}")

    node.create_timer(WATCH_INTERVAL_S, watch)

    def publish(index: int, capture_ns: int, jpeg: bytes) -> None:
        seconds, nanos = divmod(capture_ns, 1_000_000_000)
        image = CompressedImage()
        image.header.stamp.sec, image.header.stamp.nanosec = seconds, nanos
        image.header.frame_id = frame_ids[index]
        image.format = "jpeg"
        image.data = jpeg
        info = CameraInfo()
        info.header = image.header
        with lock:
            known = camera_infos[index]
        info.width, info.height = int(known.get("width", 0)), int(known.get("height", 0))
        info.distortion_model = known.get("distortion_model", "")
        info.d = [float(v) for v in known.get("d", [])]
        info.k = [float(v) for v in known.get("k", [0.0] * 9)]
        info.r = [float(v) for v in known.get("r", [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])]
        info.p = [float(v) for v in known.get("p", [0.0] * 12)]
        images[index].publish(image)
        infos[index].publish(info)

    def read() -> None:
        stream = sys.stdin.buffer
        while True:
            header = stream.read(HEADER.size)
            if len(header) < HEADER.size:
                break
            kind, index, length, capture_ns = HEADER.unpack(header)
            payload = stream.read(length)
            if len(payload) < length or index >= len(streams):
                break
            if kind == KIND_IMAGE:
                publish(index, capture_ns, payload)
            elif kind == KIND_INFO:
                with lock:
                    camera_infos[index] = json.loads(payload)
        rclpy.shutdown()  # vergence closed the pipe: the spin below ends

    executor = SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=read, name="ros2-stdin", daemon=True).start()
    say("ready")
    try:
        executor.spin()
    except Exception:  # the context was shut down by the reader: a normal end
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
