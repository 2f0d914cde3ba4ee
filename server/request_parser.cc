#include "server/request_parser.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/unknown_field_set.h"
#include "server/log.h"
#include "storage/session_record.h"

namespace sessiond {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::UnknownField;
using google::protobuf::UnknownFieldSet;

// The top-level field of the message `bytes` of type `type` that holds, at
// any depth, a string that is not UTF-8; null if none. Reads the wire format
// schemaless (which checks no UTF-8), and the field types from `type`.
const FieldDescriptor* FindNonUtf8Field(absl::string_view bytes,
                                        const Descriptor& type) {
  UnknownFieldSet fields;
  if (!fields.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return nullptr;
  }
  for (int i = 0; i < fields.field_count(); ++i) {
    const UnknownField& field = fields.field(i);
    if (field.type() != UnknownField::TYPE_LENGTH_DELIMITED) continue;
    const FieldDescriptor* descriptor = type.FindFieldByNumber(field.number());
    if (descriptor == nullptr) continue;
    const std::string& value = field.length_delimited();
    if (descriptor->type() == FieldDescriptor::TYPE_STRING) {
      if (!storage::IsUtf8(value)) return descriptor;
    } else if (descriptor->type() == FieldDescriptor::TYPE_MESSAGE &&
               FindNonUtf8Field(value, *descriptor->message_type()) !=
                   nullptr) {
      return descriptor;
    }
  }
  return nullptr;
}

void LogProtobuf(google::protobuf::LogLevel level, const char* /*filename*/,
                 int /*line*/, const std::string& message) {
  if (message.find("invalid UTF-8") != std::string::npos) return;
  if (level >= google::protobuf::LOGLEVEL_ERROR) {
    LogError("protobuf: %s", message);
  } else {
    LogWarning("protobuf: %s", message);
  }
}

}  // namespace

void RouteProtobufLogs() { google::protobuf::SetLogHandler(&LogProtobuf); }

absl::Status ParseRequest(absl::string_view bytes,
                          google::protobuf::Message* request) {
  if (request->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::OkStatus();
  }
  const Descriptor& type = *request->GetDescriptor();
  if (const FieldDescriptor* field = FindNonUtf8Field(bytes, type)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field->name(), ": must be UTF-8"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("the request is not a valid ", type.full_name()));
}

}  // namespace sessiond
