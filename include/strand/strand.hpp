// strand/strand.hpp — everything strand offers, in one include.
#pragma once

#include "strand/callbacks.hpp"
#include "strand/dispatcher.hpp"
#include "strand/dot.hpp"
#include "strand/errors.hpp"
#include "strand/generator.hpp"
#include "strand/handle.hpp"
#include "strand/make.hpp"
#include "strand/promise.hpp"
#include "strand/runner.hpp"
#include "strand/status.hpp"
#include "strand/target.hpp"
#include "strand/task.hpp"
#include "strand/task_group.hpp"
#include "strand/thread_pool.hpp"
#include "strand/when.hpp"
