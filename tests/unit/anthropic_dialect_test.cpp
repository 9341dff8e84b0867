// Placeholder: the anthropic dialect's unit tests (proxy/dialects/anthropic.cpp) go here.
#include <doctest/doctest.h>
