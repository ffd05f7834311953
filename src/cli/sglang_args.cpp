// --config FILE and argparse-style abbreviations (see sglang_args.h).
#include "cli/sglang_args.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <set>

#include "core/error.h"

namespace dsserve {

namespace {

std::vector<const CLI::Option*> long_options(const CLI::App& sub) {
  std::vector<const CLI::Option*> out;
  for (const CLI::Option* o : sub.get_options())
    if (!o->get_lnames().empty()) out.push_back(o);
  return out;
}

const CLI::Option* exact(const std::vector<const CLI::Option*>& opts, const std::string& name) {
  for (const CLI::Option* o : opts)
    for (const std::string& l : o->get_lnames())
      if (l == name) return o;
  return nullptr;
}

// The option `name` stands for: itself, or the one option it is a prefix of (argparse's rule).
const CLI::Option* resolve(const std::vector<const CLI::Option*>& opts, const std::string& name) {
  if (const CLI::Option* o = exact(opts, name)) return o;
  std::vector<const CLI::Option*> hits;
  std::string names;
  for (const CLI::Option* o : opts)
    for (const std::string& l : o->get_lnames())
      if (l.rfind(name, 0) == 0) {
        if (std::find(hits.begin(), hits.end(), o) == hits.end()) {
          hits.push_back(o);
          names += (names.empty() ? "--" : ", --") + o->get_lnames()[0];
        }
        break;
      }
  if (hits.size() > 1) fail("ambiguous option: --{} could match {}", name, names);
  return hits.empty() ? nullptr : hits[0];
}

bool takes_value(const CLI::Option* o) { return o->get_expected_min() > 0; }

// Rewrites abbreviated flags to their full names; collects the options given.
std::vector<std::string> expand_abbreviations(const std::vector<const CLI::Option*>& opts,
                                              const std::vector<std::string>& args,
                                              std::set<const CLI::Option*>& given) {
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      out.insert(out.end(), args.begin() + long(i), args.end());
      break;
    }
    if (a.size() <= 2 || a.rfind("--", 0) != 0) {
      out.push_back(a);
      continue;
    }
    const size_t eq = a.find('=');
    const std::string name = a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    const CLI::Option* o = resolve(opts, name);
    if (!o) {  // unknown: CLI11 says so
      out.push_back(a);
      continue;
    }
    given.insert(o);
    std::string full = "--" + (exact(opts, name) ? name : o->get_lnames()[0]);
    out.push_back(eq == std::string::npos ? full : full + a.substr(eq));
    if (eq == std::string::npos && takes_value(o) && i + 1 < args.size()) out.push_back(args[++i]);  // its value
  }
  return out;
}

std::string scalar_text(const YAML::Node& n) { return n.as<std::string>(); }

// The flags of a SGLang config file, for the options not given on the command line.
std::vector<std::string> config_args(const std::vector<const CLI::Option*>& opts, const std::string& path,
                                     const std::set<const CLI::Option*>& given) {
  const std::string ext = std::filesystem::path(path).extension().string();
  DS_CHECK(ext == ".yaml" || ext == ".yml", "--config {}: expected a YAML file (.yaml or .yml), as SGLang reads",
           path);
  DS_CHECK(std::filesystem::is_regular_file(path), "--config {}: no such file", path);
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    fail("--config {}: not valid YAML: {}", path, e.what());
  }
  if (root.IsNull()) return {};
  DS_CHECK(root.IsMap(), "--config {}: the file must hold a mapping of flag names to values", path);
  std::vector<std::string> out;
  for (const auto& kv : root) {
    std::string key = kv.first.as<std::string>();
    std::replace(key.begin(), key.end(), '_', '-');
    const CLI::Option* o = exact(opts, key);
    DS_CHECK(o != nullptr, "--config {}: '{}' is not a flag of this command", path, kv.first.as<std::string>());
    DS_CHECK(key != "config", "--config {}: a config file cannot name another (--config)", path);
    if (given.count(o)) continue;  // the command line wins
    const YAML::Node& v = kv.second;
    const std::string flag = "--" + key;
    if (v.IsSequence()) {
      if (v.size() == 0) continue;
      out.push_back(flag);
      for (const auto& item : v) {
        DS_CHECK(item.IsScalar(), "--config {}: '{}' must list plain values", path, key);
        out.push_back(scalar_text(item));
      }
    } else if (v.IsScalar()) {
      const std::string s = scalar_text(v);
      bool b = false;
      const bool is_bool = YAML::convert<bool>::decode(v, b) && (s == "true" || s == "false" || s == "True" ||
                                                                   s == "False" || s == "yes" || s == "no");
      if (!takes_value(o)) {  // a switch: true adds it, false leaves it out
        DS_CHECK(is_bool, "--config {}: '{}' is a switch: expected true or false, found '{}'", path, key, s);
        if (b) out.push_back(flag);
      } else {
        out.push_back(flag);
        out.push_back(is_bool ? (b ? "true" : "false") : s);
      }
    } else if (v.IsNull()) {
      continue;  // `key:` with no value: the default
    } else {
      fail("--config {}: '{}' must be a value or a list, found a mapping", path, key);
    }
  }
  return out;
}

}  // namespace

std::vector<std::string> expand_sglang_args(const CLI::App& sub, const std::vector<std::string>& args) {
  const std::vector<const CLI::Option*> opts = long_options(sub);
  // --config FILE (exactly, as SGLang looks for it) comes out first.
  std::vector<std::string> rest;
  std::string config;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--config" || a.rfind("--config=", 0) == 0) {
      DS_CHECK(config.empty(), "--config given twice: only one config file is read");
      if (a == "--config") {
        DS_CHECK(i + 1 < args.size(), "--config needs a file name");
        config = args[++i];
      } else {
        config = a.substr(9);
      }
      DS_CHECK(!config.empty(), "--config needs a file name");
      continue;
    }
    rest.push_back(a);
  }
  std::set<const CLI::Option*> given;
  std::vector<std::string> cli = expand_abbreviations(opts, rest, given);
  if (config.empty()) return cli;
  std::vector<std::string> out = config_args(opts, config, given);
  out.insert(out.end(), cli.begin(), cli.end());
  return out;
}

}  // namespace dsserve
