// A minimal JSON writer for `mpod info --json`: objects, arrays, strings
// (escaped), numbers and booleans, with commas placed by the writer.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace mpod::tools {

class JsonWriter {
 public:
  void begin_object(std::string_view key = {}) { open(key, '{'); }
  void end_object() { close('}'); }
  void begin_array(std::string_view key = {}) { open(key, '['); }
  void end_array() { close(']'); }
  void field(std::string_view key, std::string_view v) { prefix(key); quote(v); }
  void field(std::string_view key, const char* v) { field(key, std::string_view(v)); }
  void field(std::string_view key, uint64_t v) { prefix(key); out_ += std::to_string(v); }
  void field(std::string_view key, int64_t v) { prefix(key); out_ += std::to_string(v); }
  void field(std::string_view key, int32_t v) { field(key, static_cast<int64_t>(v)); }
  void field(std::string_view key, bool v) { prefix(key); out_ += v ? "true" : "false"; }
  const std::string& str() const { return out_; }

 private:
  void prefix(std::string_view key) {
    if (!first_.empty()) {
      if (!first_.back()) out_ += ',';
      first_.back() = false;
    }
    if (!key.empty()) {
      quote(key);
      out_ += ':';
    }
  }
  void open(std::string_view key, char c) {
    prefix(key);
    out_ += c;
    first_.push_back(true);
  }
  void close(char c) {
    first_.pop_back();
    out_ += c;
  }
  void quote(std::string_view s) {
    out_ += '"';
    for (unsigned char c : s) {
      if (c == '"' || c == '\\') {
        out_ += '\\';
        out_ += static_cast<char>(c);
      } else if (c < 0x20) {
        char b[8];
        std::snprintf(b, sizeof b, "\\u%04x", c);
        out_ += b;
      } else {
        out_ += static_cast<char>(c);
      }
    }
    out_ += '"';
  }
  std::string out_;
  std::vector<bool> first_;
};

}  // namespace mpod::tools
