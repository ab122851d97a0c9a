"""``bridge.proto`` and the code generated from it by ``make proto`` (do not edit the generated
modules: ``bridge_pb2`` from protoc's Python generator, ``bridge_grpc`` from grpclib's plugin).

Note: the messages are registered in protobuf's default descriptor pool under the package
``snakepit.bridge``, the names Snakepit uses on the wire, so this module cannot be imported in
the same process as upstream's ``snakepit_bridge_pb2`` (a duplicate-symbol error).
"""
