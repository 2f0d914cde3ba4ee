// ParseRequest: a request message from its wire bytes, with the error a
// caller can act on. gRPC's own parsing answers a string field that is not
// UTF-8 (proto3 requires it) with INTERNAL "Unable to parse request"; this
// answers INVALID_ARGUMENT naming the field.
#ifndef SESSIOND_SERVER_REQUEST_PARSER_H_
#define SESSIOND_SERVER_REQUEST_PARSER_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace sessiond {

// Parses `bytes` into `request`. INVALID_ARGUMENT "FIELD: must be UTF-8"
// naming the top-level field that holds a string (at any depth: a map
// entry, a field mask path) that is not UTF-8; INVALID_ARGUMENT naming the
// message type if the bytes are not such a message at all.
absl::Status ParseRequest(absl::string_view bytes,
                          google::protobuf::Message* request);

// Sends protobuf's log lines to ours (log.h), except the one it writes for
// each string field that fails to parse as UTF-8: ParseRequest tells the
// caller, and a caller must not be able to fill the log. Process-wide; call
// once, at start-up.
void RouteProtobufLogs();

}  // namespace sessiond

#endif  // SESSIOND_SERVER_REQUEST_PARSER_H_
