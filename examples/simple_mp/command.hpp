// The commands of mpod-simple-mp's prompt: "send <text>", "wait <n> [seconds]",
// "quit" and "help". The text of send is the rest of the line, spaces included.
#pragma once

#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace simple_mp {

struct Command {
  enum Kind { empty, send, wait, quit, help, invalid } kind = empty;
  std::string text;        // send: the message; invalid: what is wrong
  uint64_t count = 0;      // wait: messages received in total
  double seconds = 10;     // wait: give up after this long
};

inline const char* help_text() {
  return "commands:\n"
         "  send <text>          put <text> in a buffer from MSG_POOL and enqueue it for the other side\n"
         "  wait <n> [seconds]   wait until <n> messages have been received in total (default 10 s)\n"
         "  quit                 stop receiving, detach and exit (end of input does the same)\n"
         "  help                 this list\n";
}

inline Command parse_command(std::string_view line) {
  auto trim_left = [](std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    return s;
  };
  auto next_word = [&](std::string_view& s) {
    s = trim_left(s);
    size_t end = s.find_first_of(" \t");
    std::string_view w = s.substr(0, end);
    s.remove_prefix(end == std::string_view::npos ? s.size() : end);
    return w;
  };
  Command c;
  std::string_view rest = line;
  std::string_view word = next_word(rest);
  if (word.empty() || word.front() == '#') return c;
  if (word == "send") {
    rest = trim_left(rest);
    if (rest.empty()) return {Command::invalid, "send needs a text: send <text>"};
    c.kind = Command::send;
    c.text = rest;
  } else if (word == "wait") {
    std::string_view n = next_word(rest), s = next_word(rest);
    auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), c.count);
    if (n.empty() || ec != std::errc() || end != n.data() + n.size())
      return {Command::invalid, "wait needs a message count: wait <n> [seconds]"};
    if (!s.empty()) {
      std::string sec(s);
      char* e = nullptr;
      c.seconds = std::strtod(sec.c_str(), &e);
      if (*e || !(c.seconds > 0)) return {Command::invalid, "wait: seconds must be a number > 0, got '" + sec + "'"};
    }
    if (!next_word(rest).empty()) return {Command::invalid, "wait takes at most two numbers: wait <n> [seconds]"};
    c.kind = Command::wait;
  } else if (word == "quit" || word == "exit") {
    c.kind = Command::quit;
  } else if (word == "help" || word == "?") {
    c.kind = Command::help;
  } else {
    return {Command::invalid, "unknown command '" + std::string(word) + "'; type help for the list"};
  }
  return c;
}

}  // namespace simple_mp
