"""The schedule assistant: events per user, exact free-slot search, natural language through tool calls, trips
that apply the travel policy, and .ics import/export. ``ScheduleService`` is the entry point; ``assistant.chat``
runs the model with the tools."""
