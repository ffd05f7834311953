// Compiles the Jinja2 interpreter in src/text/jinja/ into dsserve_text. The module's CMake glob
// takes only src/text/*.cpp; delete this file once src/CMakeLists.txt also globs text/jinja/*.cpp.
#include "text/jinja/value.cpp"
#include "text/jinja/string_methods.cpp"
#include "text/jinja/lexer.cpp"
#include "text/jinja/parser.cpp"
#include "text/jinja/builtins.cpp"
#include "text/jinja/evaluator.cpp"
#include "text/jinja/template.cpp"
