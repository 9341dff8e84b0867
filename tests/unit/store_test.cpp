// store_test.cpp: being written (issue 3).
