from twisted.application.service import ServiceMaker

dialgw_simulator = ServiceMaker(
    "dialgw FreeSWITCH simulator", "dialgw.simulator.tap", "FreeSWITCH Event Socket simulator", "dialgw-simulator"
)
