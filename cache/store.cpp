// store.cpp: being written (issue 3).
