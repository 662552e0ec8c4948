"""What the test layers share: helpers, test job types and tasks, the browser driver, the Lua check."""
