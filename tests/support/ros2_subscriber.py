"""A ROS 2 subscriber for the [ros2] tests, run by the ROS venv's Python (build/rosvenv: rclpy and the messages as
wheels, Fast DDS), never by vergence's: it imports nothing of vergence.

argv: output file, seconds to listen after the first message, a command to publish (JSON text, or "" for none), then
the topics (`/cam0/image/compressed`: CompressedImage; `…/camera_info`: CameraInfo). Writes one JSON line per message
received: topic, stamp (ns), and for an image its JPEG in base64; then `{"done": true}`.
"""

import base64
import json
import sys
import time

import rclpy
from sensor_msgs.msg import CameraInfo, CompressedImage
from std_msgs.msg import String

FIRST_MESSAGE_S = 40.0  # DDS discovery takes up to a few seconds


def main() -> None:
    out_path, seconds, command = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    topics = sys.argv[4:]
    rclpy.init()
    node = rclpy.create_node("vergence_test_subscriber")
    lines = []
    first = []

    def keep(topic):
        def on_message(message):
            stamp = message.header.stamp.sec * 1_000_000_000 + message.header.stamp.nanosec
            line = {"topic": topic, "stamp_ns": stamp, "received_ns": time.time_ns()}
            if isinstance(message, CompressedImage):
                line["jpeg"] = base64.b64encode(bytes(message.data)).decode()
                line["format"] = message.format
            else:
                line["width"], line["height"] = message.width, message.height
            lines.append(line)
            if not first:
                first.append(time.monotonic())

        return on_message

    for topic in topics:
        kind = CameraInfo if topic.endswith("camera_info") else CompressedImage
        node.create_subscription(kind, topic, keep(topic), 50)
    publisher = node.create_publisher(String, "/vergence/command", 10)
    deadline = time.monotonic() + FIRST_MESSAGE_S
    sent = False
    while rclpy.ok():
        rclpy.spin_once(node, timeout_sec=0.05)
        now = time.monotonic()
        if not first and now > deadline:
            break
        if first and command and not sent and now > first[0] + 1.0:
            publisher.publish(String(data=command))
            sent = True
        if first and now > first[0] + seconds:
            break
    with open(out_path, "w") as out:
        for line in lines:
            out.write(json.dumps(line) + "\n")
        out.write(json.dumps({"done": True, "command_sent": sent}) + "\n")
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
