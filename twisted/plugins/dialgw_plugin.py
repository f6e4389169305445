from twisted.application.service import ServiceMaker

dialgw = ServiceMaker(
    "dialgw", "dialgw.service", "Outbound-call gateway for FreeSWITCH pools.", "dialgw"
)
