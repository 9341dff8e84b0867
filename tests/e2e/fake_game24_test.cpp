// End to end: fake_openai's simulated Game of 24 model (--simulate game24), its answers
// parsed the way a Tree-of-Thoughts client parses them. The prompts are ToT's
// (princeton-nlp/tree-of-thought-llm, src/tot/prompts/game24.py).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "../support/services.hpp"

using namespace reprise::test;
using nlohmann::json;

namespace {

const std::string kProposeShot =
    "Input: 2 8 8 14\nPossible next steps:\n2 + 8 = 10 (left: 8 10 14)\n8 / 2 = 4 (left: 4 8 14)\n"
    "14 + 2 = 16 (left: 8 8 16)\n2 * 8 = 16 (left: 8 14 16)\n8 - 2 = 6 (left: 6 8 14)\n"
    "14 - 8 = 6 (left: 2 6 8)\n14 /  2 = 7 (left: 7 8 8)\n14 - 2 = 12 (left: 8 8 12)\n";

const std::string kValueShots =
    "Evaluate if given numbers can reach 24 (sure/likely/impossible)\n10 14\n10 + 14 = 24\nsure\n"
    "11 12\n11 + 12 = 23\n12 - 11 = 1\n11 * 12 = 132\n11 / 12 = 0.91\nimpossible\n"
    "4 4 10\n4 + 4 + 10 = 8 + 10 = 18\n4 * 10 - 4 = 40 - 4 = 36\n(10 - 4) * 4 = 6 * 4 = 24\nsure\n"
    "4 9 11\n9 + 11 + 4 = 20 + 4 = 24\nsure\n"
    "5 7 8\n5 + 7 + 8 = 12 + 8 = 20\n(8 - 5) * 7 = 3 * 7 = 21\n"
    "I cannot obtain 24 now, but numbers are within a reasonable range\nlikely\n"
    "5 6 6\n5 + 6 + 6 = 17\n(6 - 5) * 6 = 1 * 6 = 6\n"
    "I cannot obtain 24 now, but numbers are within a reasonable range\nlikely\n"
    "10 10 11\n10 + 10 + 11 = 31\n(11 - 10) * 10 = 10\n10 10 10 are all too big\nimpossible\n"
    "1 3 3\n1 * 3 * 3 = 9\n(1 + 3) * 3 = 12\n1 3 3 are all too small\nimpossible\n";

const std::string kCotShots =
    "Use numbers and basic arithmetic operations (+ - * /) to obtain 24. Each step, you are only allowed to "
    "choose two of the remaining numbers to obtain a new number.\n"
    "Input: 4 4 6 8\nSteps:\n4 + 8 = 12 (left: 4 6 12)\n6 - 4 = 2 (left: 2 12)\n2 * 12 = 24 (left: 24)\n"
    "Answer: (6 - 4) * (4 + 8) = 24\n"
    "Input: 2 9 10 12\nSteps:\n12 * 2 = 24 (left: 9 10 24)\n10 - 9 = 1 (left: 1 24)\n24 * 1 = 24 (left: 24)\n"
    "Answer: (12 * 2) * (10 - 9) = 24\n"
    "Input: 4 9 10 13\nSteps:\n13 - 10 = 3 (left: 3 4 9)\n9 - 3 = 6 (left: 4 6)\n4 * 6 = 24 (left: 24)\n"
    "Answer: 4 * (9 - (13 - 10)) = 24\n"
    "Input: 1 4 8 8\nSteps:\n8 / 4 = 2 (left: 1 2 8)\n1 + 2 = 3 (left: 3 8)\n3 * 8 = 24 (left: 24)\n"
    "Answer: (1 + 8 / 4) * 8 = 24\n"
    "Input: 5 5 5 9\nSteps:\n5 + 5 = 10 (left: 5 9 10)\n10 + 5 = 15 (left: 9 15)\n15 + 9 = 24 (left: 24)\n"
    "Answer: ((5 + 5) + 5) + 9 = 24\n";

const std::string kJudgeShots =
    "Use numbers and basic arithmetic operations (+ - * /) to obtain 24. Given an input and an answer, give a "
    "judgement (sure/impossible) if the answer is correct, i.e. it uses each input exactly once and no other "
    "numbers, and reach 24.\n"
    "Input: 4 4 6 8\nAnswer: (4 + 8) * (6 - 4) = 24\nJudge: \nsure\n"
    "Input: 2 9 10 12\nAnswer: 2 * 12 * (10 - 9) = 24\nJudge: \nsure\n"
    "Input: 4 9 10 13\nAnswer: (13 - 9) * (10 - 4) = 24\nJudge: \nsure\n"
    "Input: 4 4 6 8\nAnswer: (4 + 8) * (6 - 4) + 1 = 25\nJudge: \nimpossible\n"
    "Input: 2 9 10 12\nAnswer: 2 * (12 - 10) = 24\nJudge: \nimpossible\n"
    "Input: 4 9 10 13\nAnswer: (13 - 4) * (10 - 9) = 24\nJudge: \nimpossible\n";

std::string propose_prompt(const std::string& input) { return kProposeShot + "Input: " + input + "\nPossible next steps:\n"; }
std::string value_prompt(const std::string& input) { return kValueShots + input + "\n"; }
std::string cot_prompt(const std::string& input) { return kCotShots + "Input: " + input + "\n"; }
std::string judge_prompt(const std::string& input, const std::string& answer) {
  return kJudgeShots + "Input: " + input + "\nAnswer: " + answer + "\nJudge:";
}

// The fake with the simulated model and no simulated delays.
struct Sim {
  TempDir dir;
  FakeUpstream fake{dir, {"--simulate", "game24", "--sim-first-token-ms", "0", "--sim-ms-per-token", "0"}};
};

json chat_request(const std::string& prompt, int n = 1) {
  json body = {{"model", "gpt-4o-mini"}, {"messages", {{{"role", "user"}, {"content", prompt}}}}};
  if (n != 1) body["n"] = n;
  return body;
}

json chat(uint16_t port, const json& body) {
  auto r = post_json(port, "/v1/chat/completions", body);
  REQUIRE(r.status == 200);
  return r.json();
}

// The contents of a chat answer's choices, in index order.
std::vector<std::string> contents(const json& answer) {
  std::vector<std::string> out(answer["choices"].size());
  for (const auto& c : answer["choices"]) out.at(c["index"].get<size_t>()) = c["message"]["content"].get<std::string>();
  return out;
}

// `count` answers to one prompt, in requests of at most n = 100 (the limit is 128).
std::vector<std::string> ask(uint16_t port, const std::string& prompt, int count) {
  std::vector<std::string> out;
  for (int n; (n = std::min(count - int(out.size()), 100)) > 0;) {
    auto some = contents(chat(port, chat_request(prompt, n)));
    out.insert(out.end(), some.begin(), some.end());
  }
  return out;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1)
    lines.push_back(text.substr(start, end - start));
  lines.push_back(text.substr(start));
  return lines;
}

std::vector<double> numbers_of(const std::string& text) {
  std::vector<double> v;
  std::istringstream in(text);
  for (double x; in >> x;) v.push_back(x);
  return v;
}

bool same_numbers(std::vector<double> a, std::vector<double> b) {
  if (a.size() != b.size()) return false;
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  for (size_t i = 0; i < a.size(); ++i)
    if (std::abs(a[i] - b[i]) > 0.011) return false;  // values print with 2 decimals
  return true;
}

// A step line as ToT reads it; nullopt when it is not one.
struct StepLine {
  double a, b, c;
  char op;
  std::vector<double> left;
};
std::optional<StepLine> parse_step(const std::string& line) {
  static const std::regex kStep(R"(^(\S+) ([-+*/]) (\S+) = (\S+) \(left: ([^)]*)\)$)");
  std::smatch m;
  if (!std::regex_match(line, m, kStep)) return std::nullopt;
  return StepLine{std::stod(m[1]), std::stod(m[3]), std::stod(m[4]), m[2].str()[0], numbers_of(m[5])};
}

// Whether the step is right from `before`: the arithmetic, and the numbers it leaves.
bool step_right(const StepLine& s, std::vector<double> before) {
  double want = s.op == '+' ? s.a + s.b : s.op == '-' ? s.a - s.b : s.op == '*' ? s.a * s.b : s.a / s.b;
  if (std::abs(want - s.c) > 0.011) return false;
  for (double x : {s.a, s.b}) {
    auto it = std::find_if(before.begin(), before.end(), [&](double v) { return std::abs(v - x) < 0.011; });
    if (it == before.end()) return false;
    before.erase(it);
  }
  before.push_back(s.c);
  return same_numbers(before, s.left);
}

std::string last_line(const std::string& text) { return lines_of(text).back(); }

bool is_verdict(const std::string& line) { return line == "sure" || line == "likely" || line == "impossible"; }

}  // namespace

TEST_CASE("fake game24: propose answers are 3 to 8 distinct step lines, mostly right, some wrong") {
  Sim sim;
  const std::vector<double> input{4, 9, 10, 13};
  int lines = 0, wrong = 0;
  for (const std::string& answer : ask(sim.fake.port(), propose_prompt("4 9 10 13"), 400)) {
    auto ls = lines_of(answer);
    CHECK(ls.size() >= 3);
    CHECK(ls.size() <= 8);
    CHECK(std::set<std::string>(ls.begin(), ls.end()).size() == ls.size());
    for (const auto& line : ls) {
      auto step = parse_step(line);
      REQUIRE_MESSAGE(step, line);
      ++lines;
      if (!step_right(*step, input)) ++wrong;
    }
  }
  MESSAGE(wrong, " wrong of ", lines, " proposed steps");
  CHECK(wrong > lines * 3 / 100);
  CHECK(wrong < lines * 15 / 100);
}

TEST_CASE("fake game24: value judgements end with sure/likely/impossible and follow solvability") {
  Sim sim;
  std::map<std::string, std::map<std::string, int>> verdicts;
  for (std::string input : {"4 6", "1 1", "4 4 10", "1 1 1 1"})
    for (const std::string& answer : ask(sim.fake.port(), value_prompt(input), 200)) {
      auto ls = lines_of(answer);
      CHECK(ls.size() >= 2);
      CHECK(ls.size() <= 5);
      ++verdicts[input][ls.back()];
    }
  for (auto& [input, counts] : verdicts)
    for (auto& [verdict, count] : counts) CHECK_MESSAGE(is_verdict(verdict), verdict);
  CHECK(verdicts["4 6"]["sure"] > 90);  // 0.6 of 200
  CHECK(verdicts["4 4 10"]["sure"] > 90);
  CHECK(verdicts["1 1"]["sure"] < 30);  // 0.05
  CHECK(verdicts["1 1"]["impossible"] > 100);  // 0.7
  CHECK(verdicts["1 1 1 1"]["impossible"] > 100);
  CHECK(verdicts["4 6"]["impossible"] < 50);  // 0.1
}

TEST_CASE("fake game24: a fresh chain of thought is three steps and an Answer, right about a third of the time") {
  Sim sim;
  static const std::regex kAnswer(R"(^Answer: (.+) = 24$)");
  int right = 0, total = 0;
  for (const std::string& answer : ask(sim.fake.port(), cot_prompt("4 9 10 13"), 200)) {
    auto ls = lines_of(answer);
    REQUIRE_MESSAGE(ls.size() == 5, answer);
    CHECK(ls[0] == "Steps:");
    CHECK_MESSAGE(std::regex_match(ls[4], kAnswer), ls[4]);
    std::vector<double> numbers{4, 9, 10, 13};
    bool ok = true;
    for (size_t i = 1; i <= 3; ++i) {
      auto step = parse_step(ls[i]);
      REQUIRE_MESSAGE(step, ls[i]);
      ok = ok && step_right(*step, numbers);
      numbers = step->left;
    }
    ++total;
    if (ok && same_numbers(numbers, {24})) ++right;
  }
  MESSAGE(right, " right chains of ", total);
  CHECK(right > total / 5);  // 0.35
  CHECK(right < total / 2);
}

TEST_CASE("fake game24: a chain of thought continued after its steps gives the Answer they compose") {
  Sim sim;
  // ToT appends its steps right after "Steps:".
  const std::string done = cot_prompt("4 9 10 13") +
                           "Steps:13 - 10 = 3 (left: 3 4 9)\n9 - 3 = 6 (left: 4 6)\n4 * 6 = 24 (left: 24)\n";
  int composed = 0;
  for (const std::string& answer : ask(sim.fake.port(), done, 100)) {
    CHECK_MESSAGE(answer.starts_with("Answer: "), answer);
    CHECK(answer.ends_with(" = 24"));
    CHECK(answer.find('\n') == std::string::npos);
    if (answer == "Answer: 4 * (9 - (13 - 10)) = 24") ++composed;
  }
  CHECK(composed > 75);  // 0.9

  // One step taken: the other two come first, then the Answer.
  const std::string started = cot_prompt("4 9 10 13") + "Steps:13 - 10 = 3 (left: 3 4 9)\n";
  for (const std::string& answer : ask(sim.fake.port(), started, 20)) {
    auto ls = lines_of(answer);
    REQUIRE_MESSAGE(ls.size() == 3, answer);
    CHECK(parse_step(ls[0]));
    CHECK(parse_step(ls[1]));
    CHECK(ls[2].starts_with("Answer: "));
  }
}

TEST_CASE("fake game24: the last-step judge checks the answer for real, mostly") {
  Sim sim;
  auto count = [&](const std::string& answer, const std::string& verdict) {
    auto answers = ask(sim.fake.port(), judge_prompt("4 9 10 13", answer), 100);
    for (const auto& a : answers) CHECK((a == "sure" || a == "impossible"));
    return std::count(answers.begin(), answers.end(), verdict);
  };
  CHECK(count("4 * (9 - (13 - 10)) = 24", "sure") > 75);  // 0.9
  CHECK(count("(13 - 4) * (10 - 9) = 24", "impossible") > 75);  // 9, not 24
  CHECK(count("4 * 6 = 24", "impossible") > 75);  // not the input's numbers
}

TEST_CASE("fake game24: n choices are independent, a seed repeats them, other prompts get words") {
  Sim sim;
  auto five = ask(sim.fake.port(), propose_prompt("1 2 3 4"), 5);
  REQUIRE(five.size() == 5);
  CHECK(std::set<std::string>(five.begin(), five.end()).size() >= 2);
  for (const auto& a : five) CHECK(parse_step(lines_of(a)[0]));

  json seeded = chat_request(value_prompt("2 3 4"), 3);
  seeded["seed"] = 7;
  auto first = contents(chat(sim.fake.port(), seeded));
  CHECK(contents(chat(sim.fake.port(), seeded)) == first);

  auto plain = ask(sim.fake.port(), "Say something", 1);
  CHECK(plain[0].find('\n') == std::string::npos);
  CHECK_FALSE(parse_step(plain[0]));
}

TEST_CASE("fake game24: /v1/completions answers each prompt of a list, and max_tokens cuts") {
  Sim sim;
  json body = {{"model", "gpt-4o-mini"}, {"prompt", json::array({propose_prompt("2 3 4 6"), value_prompt("2 3 4")})}, {"n", 2}};
  auto r = post_json(sim.fake.port(), "/v1/completions", body);
  REQUIRE(r.status == 200);
  const json answer = r.json();
  std::vector<std::string> texts(4);
  for (const auto& c : answer["choices"]) texts.at(c["index"].get<size_t>()) = c["text"].get<std::string>();
  CHECK(parse_step(lines_of(texts[0])[0]));
  CHECK(parse_step(lines_of(texts[1])[0]));
  for (int i : {2, 3}) CHECK(is_verdict(last_line(texts[i])));

  body = {{"model", "gpt-4o-mini"}, {"prompt", propose_prompt("2 3 4 6")}, {"max_tokens", 5}};
  auto cut = post_json(sim.fake.port(), "/v1/completions", body).json();
  CHECK(cut["choices"][0]["finish_reason"] == "length");
  CHECK(cut["usage"]["completion_tokens"] == 5);  // "2 + 3 = 5", say
  CHECK(cut["choices"][0]["text"].get<std::string>().find("(left") == std::string::npos);
}

TEST_CASE("fake game24: usage counts GPT-like tokens and a stream's pieces are those tokens") {
  Sim sim;
  const std::string prompt = propose_prompt("4 9 10 13");
  auto whole = chat(sim.fake.port(), chat_request(prompt));
  const int prompt_tokens = whole["usage"]["prompt_tokens"];
  CHECK(prompt_tokens > 100);  // the 1-shot propose prompt is ~116 tokens, plus 3 for the message
  CHECK(prompt_tokens < 140);
  const size_t lines = lines_of(contents(whole)[0]).size();
  const int completion_tokens = whole["usage"]["completion_tokens"];
  CHECK(completion_tokens >= int(10 * lines));  // "4 + 9 = 13 (left: 10 13 13)" is 12
  CHECK(completion_tokens <= int(25 * lines));

  json body = chat_request(prompt);
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  auto r = post_json(sim.fake.port(), "/v1/chat/completions", body);
  REQUIRE(r.status == 200);
  bool done = false;
  auto events = sse_events(r.body, &done);
  CHECK(done);
  std::string text;
  int pieces = 0;
  for (const auto& e : events)
    if (!e["choices"].empty() && e["choices"][0]["delta"].contains("content") &&
        !e["choices"][0]["delta"]["content"].get<std::string>().empty()) {
      text += e["choices"][0]["delta"]["content"].get<std::string>();
      ++pieces;
    }
  for (const auto& line : lines_of(text)) CHECK_MESSAGE(parse_step(line), line);
  REQUIRE(events.back()["choices"].empty());
  CHECK(events.back()["usage"]["prompt_tokens"] == prompt_tokens);
  CHECK(events.back()["usage"]["completion_tokens"] == pieces);
}

TEST_CASE("fake game24: /_fake/stats counts tokens and calls by kind, and the mode switches at run time") {
  Sim sim;
  const uint16_t port = sim.fake.port();
  int64_t prompt_tokens = 0, completion_tokens = 0;
  for (const std::string& prompt : {propose_prompt("1 2 3 4"), value_prompt("1 2 3"), cot_prompt("1 2 3 4"),
                                    judge_prompt("1 2 3 4", "1 * 2 * 3 * 4 = 24"), std::string("hello")}) {
    auto answer = chat(port, chat_request(prompt));
    prompt_tokens += answer["usage"]["prompt_tokens"].get<int64_t>();
    completion_tokens += answer["usage"]["completion_tokens"].get<int64_t>();
  }
  auto stats = sim.fake.stats();
  CHECK(stats["calls_by_kind"] ==
        json({{"propose", 1}, {"value", 1}, {"value_last_step", 1}, {"cot", 1}, {"other", 1}}));
  CHECK(stats["prompt_tokens"] == prompt_tokens);
  CHECK(stats["completion_tokens"] == completion_tokens);

  sim.fake.control({{"simulate", "off"}});
  auto words = ask(port, propose_prompt("1 2 3 4"), 1);
  CHECK(words[0].find("(left:") == std::string::npos);
  CHECK(sim.fake.stats()["calls_by_kind"]["propose"] == 1);

  auto knobs = request(port, "POST", "/_fake/reset", "{}").json();
  CHECK(knobs["simulate"] == "game24");
  stats = sim.fake.stats();
  CHECK(stats["prompt_tokens"] == 0);
  CHECK(stats["calls_by_kind"]["propose"] == 0);
  CHECK(request(port, "POST", "/_fake/control", R"({"simulate":"yes"})").status == 400);
}

TEST_CASE("fake game24: simulated latency delays answers, and waiting requests do not block each other") {
  Sim sim;
  const uint16_t port = sim.fake.port();
  auto timed = [&](const json& body) {
    auto start = Clock::now();
    auto r = post_json(port, "/v1/chat/completions", body);
    REQUIRE(r.status == 200);
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  };
  sim.fake.control({{"sim_first_token_ms", 200}});
  CHECK(timed(chat_request(value_prompt("4 6"))) >= 200);

  // Per token: 20 ms for each of 5 tokens, streamed or not.
  sim.fake.control({{"sim_first_token_ms", 0}, {"sim_ms_per_token", 20}});
  json body = chat_request(propose_prompt("4 6"));
  body["max_tokens"] = 5;
  CHECK(timed(body) >= 100);
  body["stream"] = true;
  CHECK(timed(body) >= 80);  // 4 waits between 5 tokens

  // 200 requests waiting 300 ms each on the fake's one thread: together, not in turn.
  sim.fake.control({{"sim_first_token_ms", 300}, {"sim_ms_per_token", 0}});
  const std::string raw = build_request("POST", "/v1/chat/completions", chat_request(value_prompt("4 6")).dump());
  auto start = Clock::now();
  std::vector<std::unique_ptr<Conn>> conns;
  for (int i = 0; i < 200; ++i) {
    conns.push_back(std::make_unique<Conn>(port));
    conns.back()->send(raw);
  }
  for (auto& c : conns) CHECK(read_response(*c, std::chrono::seconds(10)).status == 200);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  CHECK(took >= 300);
  CHECK(took < 3000);  // in turn it would be a minute
}
