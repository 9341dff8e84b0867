// Placeholder: the gemini dialect's unit tests (proxy/dialects/gemini.cpp) go here.
#include <doctest/doctest.h>
