"""The protocol's gRPC definition (``grpc_predict_v2.proto``) and the Python modules generated from it."""
