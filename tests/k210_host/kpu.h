/* Test double: host memory has no uncached alias. */
#define IOMEM 0
